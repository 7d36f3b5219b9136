"""read_prompt on a table of prompts: elements, formula, crystal system, space group and structure type, and
which prompts must warn (PromptWarning) or raise (PromptError)."""
import warnings

import pytest

from crystal_tutorial.prompts import read_prompt
from crystal_tutorial.prompt_words import PromptError, PromptWarning, parse_formula

OK, WARN = 'ok', 'warn'
# prompt, elements, formula (text or None), crystal system, space group, structure type, 'ok' / 'warn'
CASES = [
    # MP-40 style (written here as patterns, not taken from the data set)
    ('Orthorhombic crystal structure of Dy₃In₅ with metallic properties.',
     'Dy In', 'Dy3In5', 'orthorhombic', None, None, OK),
    ('Tetragonal crystal structure of SrO8 compound', 'Sr O', 'SrO8', 'tetragonal', None, None, OK),
    ('Hexagonal crystal lattice of Nd5P12Os19 compound',
     'Nd P Os', 'Nd5P12Os19', 'hexagonal', None, None, OK),
    ('Distinctive monoclinic geometry of Ba2SrV2NiF14',
     'Ba Sr V Ni F', 'Ba2SrV2NiF14', 'monoclinic', None, None, OK),
    ('Structural analysis of Sm2Te3 revealing orthorhombic crystal system',
     'Sm Te', 'Sm2Te3', 'orthorhombic', None, None, OK),
    ('Atomic arrangement in monoclinic FeGeO3', 'Fe Ge O', 'FeGeO3', 'monoclinic', None, None, OK),
    ('Triclinic crystal structure of CoAg4(PO4)6', 'Co Ag P O', 'CoAg4P6O24', 'triclinic', None, None, OK),
    ('Orthorhombic arrangement of Cd, B, and Rh atoms in Cd5B3Rh7',
     'Cd B Rh', 'Cd5B3Rh7', 'orthorhombic', None, None, OK),
    ('Tm(Co2B)6 crystal structure in trigonal form', 'Tm Co B', 'TmCo12B6', 'trigonal', None, None, OK),
    ('Unique monoclinic arrangement in Rb2PtN2(ClO2)2 crystal',
     'Rb Pt N Cl O', 'Rb2PtN2Cl2O4', 'monoclinic', None, None, OK),
    ('Cubic arrangement of KBrO3 molecules', 'K Br O', 'KBrO3', 'cubic', None, None, OK),
    ('Structural perfection in Yb3Ge13Ru4 cubic lattice', 'Yb Ge Ru', 'Yb3Ge13Ru4', 'cubic', None, None, OK),
    ('Ternary compound Re3Se4Br exhibiting monoclinic symmetry',
     'Re Se Br', 'Re3Se4Br', 'monoclinic', None, None, OK),
    ('High-resolution image of U2B6Ru crystal in orthorhombic symmetry',
     'U B Ru', 'U2B6Ru', 'orthorhombic', None, None, OK),
    ('Tetragonal crystal structure of Pr6Fe13Ag alloy',
     'Pr Fe Ag', 'Pr6Fe13Ag', 'tetragonal', None, None, OK),
    ('Monoclinic H2SO3 structure revealed through X-ray diffraction',
     'H S O', 'H2SO3', 'monoclinic', None, None, OK),
    ('Gadolinium and osmium carbide compound exhibiting hexagonal crystal system',
     'Gd Os C', None, 'hexagonal', None, None, OK),
    ('Erbium compound exhibiting triclinic symmetry', 'Er', None, 'triclinic', None, None, OK),
    ('Neodymium zirconium pentaselenide in orthorhombic crystal form',
     'Nd Zr Se', None, 'orthorhombic', None, None, OK),
    ('Holmium-iron-cobalt compound in hexagonal crystal system',
     'Ho Fe Co', None, 'hexagonal', None, None, OK),
    ('Orthorhombic crystal structure of Yttrium telluride', 'Y Te', None, 'orthorhombic', None, None, OK),
    ('Monoclinic structure of nickel phosphate (Ni3(PO4)2)',
     'Ni P O', 'Ni3P2O8', 'monoclinic', None, None, OK),
    ("Zr2Ni7's monoclinic crystal arrangement", 'Zr Ni', 'Zr2Ni7', 'monoclinic', None, None, OK),
    ('Lanthanum hydride (LaH3) in hexagonal form', 'La H', 'LaH3', 'hexagonal', None, None, OK),
    ('Orthorhombic crystal structure of Rb metal', 'Rb', 'Rb', 'orthorhombic', None, None, OK),
    ('High symmetry in Tb3Ge13Os4 crystal lattice - cubic form',
     'Tb Ge Os', 'Tb3Ge13Os4', 'cubic', None, None, OK),
    ('Geometrically precise hexagonal structure of Er5Sn3 mineral',
     'Er Sn', 'Er5Sn3', 'hexagonal', None, None, OK),
    ('Hexagonal symmetry of Gd2Si3Ir intermetallic compound',
     'Gd Si Ir', 'Gd2Si3Ir', 'hexagonal', None, None, OK),
    ('Monoclinic crystal structure of rare-earth compound NdSbO4',
     'Nd Sb O', 'NdSbO4', 'monoclinic', None, None, WARN),
    ('Trigonal crystal structure of SrAlSiH for efficient energy storage',
     'Sr Al Si H', 'SrAlSiH', 'trigonal', None, None,
     WARN),
    ('Ba(InH)2 exhibiting trigonal symmetry', 'Ba In H', 'BaIn2H2', 'trigonal', None, None, OK),
    ('Symmetric arrangement of arsenic and osmium in Th(As3Os)4 cubic lattice',
     'As Os Th', 'ThAs12Os4', 'cubic', None, None,
     OK),
    ('Atomic arrangement of K2SnH2Br4O in orthorhombic crystal lattice',
     'K Sn H Br O', 'K2SnH2Br4O', 'orthorhombic', None,
     None, OK),
    ('Crystallographic arrangement of H4CSIN2 in monoclinic symmetry',
     'H C S I N', 'H4CSIN2', 'monoclinic', None, None, OK),
    ('MgHP crystal structure displaying hexagonal symmetry arrangement',
     'Mg H P', 'MgHP', 'hexagonal', None, None, OK),
    ('Cubic crystallography of Eu3Rh4Sn13 alloy', 'Eu Rh Sn', 'Eu3Rh4Sn13', 'cubic', None, None, OK),
    ('Alumina crystal structure in hexagonal symmetry', 'Al O', 'Al2O3', 'hexagonal', None, None, OK),
    ('Cubic crystal structure of SrTiO3 compound', 'Sr Ti O', 'SrTiO3', 'cubic', None, None, OK),
    # the failures of issue 21
    ('CaIn₂', 'Ca In', 'CaIn2', None, None, None, OK),
    ('Ti O S', 'Ti O S', None, None, None, None, OK),
    ('Ti O and sulfur', 'Ti O S', None, None, None, None, OK),
    ('-Ti O S', 'Ti O S', None, None, None, None, OK),
    ('Ti, O, S.', 'Ti O S', None, None, None, None, OK),
    # formulas in all their spellings
    ('Dy7In(CoGe3)4', 'Dy In Co Ge', 'Dy7InCo4Ge12', None, None, None, OK),
    ('Pr(AlAu)2', 'Pr Al Au', 'PrAl2Au2', None, None, None, OK),
    ('U1 Ni1 Si1', 'U Ni Si', 'UNiSi', None, None, None, OK),
    ('Sr Ti O3', 'Sr Ti O', 'SrTiO3', None, None, None, OK),
    ('CuSO4·5H2O', 'Cu S O H', 'CuSO9H10', None, None, None, OK),
    ('CuSO4.5H2O', 'Cu S O H', 'CuSO9H10', None, None, None, OK),
    ('MgSO4 · 7H2O crystal', 'Mg S O H', 'MgSO11H14', None, None, None, OK),
    ('Li0.5CoO2', 'Li Co O', 'Li0.5CoO2', None, None, None, OK),
    ('TiO<sub>2</sub>', 'Ti O', 'TiO2', None, None, None, OK),
    ('Ca²⁺ and F⁻ in CaF₂', 'Ca F', 'CaF2', None, None, None, OK),
    ('TiO_2 anatase', 'Ti O', 'TiO2', 'tetragonal', 141, 'anatase', OK),
    ('[Co(NH3)6]Cl3', 'Co N H Cl', 'CoN6H18Cl3', None, None, None, OK),
    ('Fe', 'Fe', 'Fe', None, None, None, OK),
    ('TiOS', 'Ti O S', 'TiOS', None, None, None, OK),
    ('(NH4)2SO4', 'N H S O', 'N2H8SO4', None, None, None, OK),
    ('Ca5(PO4)3F', 'Ca P O F', 'Ca5P3O12F', None, None, None, OK),
    # element names, anion words, prefixes
    ('titanium dioxide', 'Ti O', 'TiO2', None, None, None, OK),
    ('carbon monoxide', 'C O', 'CO', None, None, None, OK),
    ('diiron trioxide', 'Fe O', 'Fe2O3', None, None, None, OK),
    ('sulfur hexafluoride', 'S F', 'SF6', None, None, None, OK),
    ('diphosphorus pentoxide', 'P O', 'P2O5', None, None, None, OK),
    ('oxide of strontium and titanium', 'O Sr Ti', None, None, None, None, OK),
    ('titanium and oxygen', 'Ti O', None, None, None, None, OK),
    ('sulphur', 'S', None, None, None, None, OK),
    ('aluminium oxide', 'Al O', None, None, None, None, OK),
    ('aluminum nitride', 'Al N', None, None, None, None, OK),
    ('caesium iodide', 'Cs I', None, None, None, None, OK),
    ('zinc sulphide', 'Zn S', None, None, None, None, OK),
    ('gallium arsenide', 'Ga As', None, None, None, None, OK),
    ('silicon carbide', 'Si C', None, None, None, None, OK),
    ('lithium hydride', 'Li H', None, None, None, None, OK),
    ('cadmium selenide', 'Cd Se', None, None, None, None, OK),
    ('bismuth telluride', 'Bi Te', None, None, None, None, OK),
    ('indium phosphide', 'In P', None, None, None, None, OK),
    ('magnesium boride', 'Mg B', None, None, None, None, OK),
    ('iron silicide', 'Fe Si', None, None, None, None, OK),
    ('indium antimonide', 'In Sb', None, None, None, None, OK),
    ('potassium bromide', 'K Br', None, None, None, None, OK),
    ('calcium fluoride', 'Ca F', None, None, None, None, OK),
    ('sodium chloride', 'Na Cl', None, None, None, None, OK),
    ('boron nitride', 'B N', None, None, None, None, OK),
    ('iron(III) oxide', 'Fe O', None, None, None, None, OK),
    ('barium titanate', 'Ba Ti O', None, None, None, None, OK),
    ('lithium iron phosphate', 'Li Fe P O', None, None, None, None, OK),
    ('calcium carbonate', 'Ca C O', None, None, None, None, OK),
    ('lanthanum oxyfluoride', 'La O F', None, None, None, None, OK),
    ('a cubic crystal of titanium, oxygen and sulfur', 'Ti O S', None, 'cubic', None, None, OK),
    # structure types and minerals
    ('rutile', 'Ti O', 'TiO2', 'tetragonal', 136, 'rutile', OK),
    ('SnO2 in the rutile structure', 'Sn O', 'SnO2', 'tetragonal', 136, 'rutile', OK),
    ('rutile titanium oxide', 'Ti O', 'TiO2', 'tetragonal', 136, 'rutile', OK),
    ('a rutile fluoride', 'F', None, 'tetragonal', 136, 'rutile', OK),
    ('anatase', 'Ti O', 'TiO2', 'tetragonal', 141, 'anatase', OK),
    ('brookite', 'Ti O', 'TiO2', 'orthorhombic', 61, 'brookite', OK),
    ('a perovskite oxide', 'O', None, 'cubic', 221, 'perovskite', OK),
    ('SrTiO3 perovskite', 'Sr Ti O', 'SrTiO3', 'cubic', 221, 'perovskite', OK),
    ('orthorhombic perovskite CaTiO3', 'Ca Ti O', 'CaTiO3', 'orthorhombic', None, 'perovskite', OK),
    ('MgAl2O4 spinel', 'Mg Al O', 'MgAl2O4', 'cubic', 227, 'spinel', OK),
    ('inverse spinel NiFe2O4', 'Ni Fe O', 'NiFe2O4', 'cubic', 227, 'inverse spinel', OK),
    ('rock salt', 'Na Cl', 'NaCl', 'cubic', 225, 'rock salt', OK),
    ('MgO in the rock-salt structure', 'Mg O', 'MgO', 'cubic', 225, 'rock salt', OK),
    ('halite', 'Na Cl', 'NaCl', 'cubic', 225, 'rock salt', OK),
    ('zinc blende GaAs', 'Ga As', 'GaAs', 'cubic', 216, 'zinc blende', OK),
    ('sphalerite', 'Zn S', 'ZnS', 'cubic', 216, 'zinc blende', OK),
    ('wurtzite GaN', 'Ga N', 'GaN', 'hexagonal', 186, 'wurtzite', OK),
    ('fluorite', 'Ca F', 'CaF2', 'cubic', 225, 'fluorite', OK),
    ('antifluorite Li2O', 'Li O', 'Li2O', 'cubic', 225, 'antifluorite', OK),
    ('covellite', 'Cu S', 'CuS', 'hexagonal', 194, 'covellite', OK),
    ('pyrite', 'Fe S', 'FeS2', 'cubic', 205, 'pyrite', OK),
    ('corundum', 'Al O', 'Al2O3', 'trigonal', 167, 'corundum', OK),
    ('quartz', 'Si O', 'SiO2', 'trigonal', None, 'quartz', OK),
    ('α-quartz', 'Si O', 'SiO2', 'trigonal', None, 'quartz', OK),
    ('calcite', 'Ca C O', 'CaCO3', 'trigonal', 167, 'calcite', OK),
    ('KCl in the cesium chloride structure', 'K Cl', 'KCl', 'cubic', 221, 'cesium chloride', OK),
    ('CsCl-type TlBr', 'Tl Br', 'TlBr', 'cubic', 221, 'cesium chloride', OK),
    ('diamond', 'C', 'C', 'cubic', 227, 'diamond', OK),
    ('graphite', 'C', 'C', 'hexagonal', 194, 'graphite', OK),
    ('a garnet', '', None, 'cubic', 230, 'garnet', OK),
    ('olivine Fe2SiO4', 'Fe Si O', 'Fe2SiO4', 'orthorhombic', 62, 'olivine', OK),
    ('ilmenite', 'Fe Ti O', 'FeTiO3', 'trigonal', 148, 'ilmenite', OK),
    ('delafossite CuAlO2', 'Cu Al O', 'CuAlO2', 'trigonal', 166, 'delafossite', OK),
    ('chalcopyrite', 'Cu Fe S', 'CuFeS2', 'tetragonal', 122, 'chalcopyrite', OK),
    ('Heusler Co2MnSi', 'Co Mn Si', 'Co2MnSi', 'cubic', 225, 'Heusler', OK),
    ('half-Heusler TiNiSn', 'Ti Ni Sn', 'TiNiSn', 'cubic', 216, 'half-Heusler', OK),
    ('NiAs-type FeS', 'Fe S', 'FeS', 'hexagonal', 194, 'NiAs', OK),
    ('SnS2 in the CdI2 structure', 'Sn S', 'SnS2', 'trigonal', 164, 'CdI2', OK),
    ('MoS2', 'Mo S', 'MoS2', None, None, None, OK),
    ('WSe2, MoS2-type', 'W Se', 'WSe2', 'hexagonal', 194, 'MoS2', OK),
    ('pyrochlore Y2Ti2O7', 'Y Ti O', 'Y2Ti2O7', 'cubic', 227, 'pyrochlore', OK),
    ('Ruddlesden-Popper Sr2RuO4', 'Sr Ru O', 'Sr2RuO4', 'tetragonal', 139, 'Ruddlesden-Popper', OK),
    ('ABX3 perovskite', '', None, 'cubic', 221, 'perovskite', OK),
    ('a sodalite', '', None, None, None, None, WARN),
    ('CaTiO3 with a jadeite structure', 'Ca Ti O', 'CaTiO3', None, None, None, WARN),
    # crystal systems, space-group symbols and numbers
    ('a rhombohedral Bi2Te3', 'Bi Te', 'Bi2Te3', 'trigonal', None, None, OK),
    ('NaCl in space group Fm-3m', 'Na Cl', 'NaCl', 'cubic', 225, None, OK),
    ('GaN P6_3mc', 'Ga N', 'GaN', 'hexagonal', 186, None, OK),
    ('MgB2 in P6/mmm', 'Mg B', 'MgB2', 'hexagonal', 191, None, OK),
    ('ZnO P 63/m c', 'Zn O', 'ZnO', None, None, None, WARN),
    ('graphite-like BN, P 63/m m c', 'B N', 'BN', 'hexagonal', 194, 'graphite', OK),
    ('TiO2 P42/mnm', 'Ti O', 'TiO2', 'tetragonal', 136, None, OK),
    ('CaTiO3 Pnma', 'Ca Ti O', 'CaTiO3', 'orthorhombic', 62, None, OK),
    ('CaTiO3, space group 62', 'Ca Ti O', 'CaTiO3', 'orthorhombic', 62, None, OK),
    ('SrTiO3 sg 221', 'Sr Ti O', 'SrTiO3', 'cubic', 221, None, OK),
    ('Cu in Fm3m', 'Cu', 'Cu', 'cubic', 225, None, OK),
    ('LiFePO4 (No. 62)', 'Li Fe P O', 'LiFePO4', 'orthorhombic', 62, None, OK),
    ('Si space group Fd−3m', 'Si', 'Si', 'cubic', 227, None, OK),
    ('P1 triclinic', 'P', 'P', 'triclinic', None, None, OK),
    ('triclinic NaCl, space group P1', 'Na Cl', 'NaCl', 'triclinic', 1, None, OK),
    ('cubic GaN in space group P6_3mc', 'Ga N', 'GaN', 'hexagonal', 186, None, WARN),
    ('In a tetragonal cell, InSb', 'In Sb', 'InSb', 'tetragonal', None, None, OK),
    # properties of the training templates
    ('a stable hexagonal binary sulfide', 'S', None, 'hexagonal', None, None, OK),
    ('metastable cubic NaCl compound', 'Na Cl', 'NaCl', 'cubic', None, None, OK),
    ('TiO2, an insulator with a tetragonal lattice', 'Ti O', 'TiO2', 'tetragonal', None, None, OK),
    ('semiconducting GaAs with a band gap', 'Ga As', 'GaAs', None, None, None, OK),
    ('unstable monoclinic Cu3N compound', 'Cu N', 'Cu3N', 'monoclinic', None, None, OK),
    ('Ni Al intermetallic', 'Ni Al', None, None, None, None, OK),
    ('ferromagnetic Fe3O4', 'Fe O', 'Fe3O4', None, None, None, WARN),
    ('SrTiO3 and BaTiO3', 'Sr Ti O Ba', None, None, None, None, WARN),
    ('SrTiO3 with some Sn atoms', 'Sr Ti O Sn', 'SrTiO3', None, None, None, WARN),
]
ERRORS = [   # prompt, part of the PromptError message
    ('Ti O s', "did you mean 'S'"), ('Тi O', 'non-Latin letter'), ('Xx2', "unknown element 'Xx'"),
    ('Ti O Xx',
     "unknown element 'Xx'"), ('Ab', "unknown element 'Ab'"), ('cubic SrTiQ3', "unknown element 'Q'"),
    ('', 'empty prompt'), ('   ', 'empty prompt'), (None, 'empty prompt'), ('tio2', "did you mean 'TiO2'"),
    ('fe O',
     "did you mean 'Fe'"), ('Ba(TiO3', 'unbalanced brackets'), ('NaCl space group 300', 'does not exist'),
    ('TiО2', 'non-Latin letter'), ('Na Cl and О', 'non-Latin letter'),
]


def _read(prompt):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        r = read_prompt(prompt)
    return r, [w for w in caught if issubclass(w.category, PromptWarning)]


def test_enough_cases():
    assert len(CASES) + len(ERRORS) >= 100 and sum(c[0][0].isupper() and len(c[0]) > 30 for c in CASES) >= 30


@pytest.mark.parametrize('prompt, elements, formula, system, spacegroup, structure_type, outcome', CASES,
                         ids=[c[0][:40] for c in CASES])
def test_reading(prompt, elements, formula, system, spacegroup, structure_type, outcome):
    r, warned = _read(prompt)
    assert r.elements == elements.split(), r
    assert r.formula == (parse_formula(formula) if formula else None), r
    assert (r.crystal_system, r.spacegroup, r.structure_type) == (system, spacegroup, structure_type), r
    assert len(warned) == (outcome == WARN), [str(w.message) for w in warned]
    if warned: assert '\n' not in str(warned[0].message) and prompt in str(warned[0].message)


@pytest.mark.parametrize('prompt, message', ERRORS, ids=[repr(e[0]) for e in ERRORS])
def test_errors(prompt, message):
    with pytest.raises(PromptError, match=message.replace('(', r'\(')):
        read_prompt(prompt)


def test_unread_words_are_named_and_strict_raises():
    r, warned = _read('Trigonal crystal structure of BaAlGeH for efficient energy storage')
    assert r.unread == ['efficient', 'energy', 'storage'] and "'energy'" in str(warned[0].message)
    assert 'mineral name' in str(_read('a sodalite')[1][0].message)
    with pytest.raises(PromptError, match="could not read 'storage'"):
        read_prompt('BaAlGeH for storage', strict=True)


def test_properties_and_completeness():
    r, _ = _read('Orthorhombic crystal structure of Dy₃In₅ with metallic properties.')
    assert r.properties == ['metal'] and r.complete
    assert _read('a stable ternary oxide')[0].properties == ['stable', 'ternary']
    assert not _read('a hexagonal binary sulfide')[0].complete
    assert not _read('a ternary oxide of titanium')[0].complete and _read('titanium oxide')[0].complete
    assert _read('GaAs without a band gap')[0].properties == ['metal']
    assert 'formula Dy3In5' in repr(r) and 'system orthorhombic' in r.summary()


def test_prompt_error_is_shared_with_chameleon():
    from crystal_tutorial import chameleon, prompts
    assert chameleon.PromptError is prompts.PromptError and issubclass(PromptError, ValueError)
