"""Evaluation metrics on hand-made cases with known answers, and the `crystal-tutorial evaluate` command on bad input.

Everything here is built by code (pymatgen Structures, the toy crystals of chapter 05): no dataset is needed, except
for the tests marked as needing the shared datasets, which are skipped without them.
"""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from crystal_tutorial.crystals import make_toy_crystals
from crystal_tutorial.crystal_data import datasets_root
from crystal_tutorial.evaluation import (EvaluationError, composition_validity, load_structures,
                                         min_interatomic_distance, novel_mask, rms_dist, structure_validity,
                                         unique_mask)
from crystal_tutorial.stability import ConvexHull, evaluate, relax_structures

warnings.filterwarnings('ignore', module='pymatgen')
CLI = [sys.executable, '-c', 'import sys; from crystal_tutorial.cli import main; sys.exit(main())']


def nacl():
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(5.64), ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite():
    return Structure(Lattice.cubic(3.9), ['Sr', 'Ti', 'O', 'O', 'O'],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


# --- validity ---

def test_atoms_too_close_across_the_periodic_boundary_are_invalid():
    s = Structure(Lattice.cubic(5.0), ['Na', 'Cl'], [[0.01, 0, 0], [0.95, 0, 0]])   # 4.7 Å inside, 0.3 Å through the boundary
    assert min_interatomic_distance(s) == pytest.approx(0.3)
    assert not structure_validity(s)
    assert structure_validity(Structure(Lattice.cubic(5.0), ['Na', 'Cl'], [[0.25, 0, 0], [0.75, 0, 0]]))


def test_an_atom_too_close_to_its_own_image_and_a_flat_cell_are_invalid():
    assert not structure_validity(Structure(Lattice.cubic(0.3), ['Cu'], [[0, 0, 0]]))
    flat = Structure(Lattice.from_parameters(4, 4, 0.005, 90, 90, 90), ['Cu'], [[0, 0, 0]])
    assert not structure_validity(flat)


def test_charge_neutrality():
    assert composition_validity('NaCl')
    assert not composition_validity('NaCl2')
    assert composition_validity(nacl())
    assert composition_validity('SrTiO3')


# --- matching, uniqueness, novelty ---

def test_rotated_translated_permuted_and_supercell_copies_match():
    s = perovskite()
    rotated = s.copy(); rotated.apply_operation(SymmOp.from_axis_angle_and_translation([1, 1, 0], 33.0))
    translated = s.copy(); translated.translate_sites(list(range(len(s))), [0.21, 0.37, 0.05])
    permuted = Structure.from_sites([s[i] for i in [3, 0, 4, 1, 2]])
    for copy in (rotated, translated, permuted, s * (1, 2, 1)):
        assert rms_dist(copy, s) == pytest.approx(0.0, abs=1e-4)
    other = Structure(Lattice.tetragonal(3.9, 8.0), s.species, s.frac_coords)     # the same atoms in a stretched cell
    assert rms_dist(other, s) is None


def test_uniqueness_and_novelty():
    s, n = perovskite(), nacl()
    assert unique_mask([s, s * (2, 1, 1), n, n.copy()]).tolist() == [True, False, True, False]
    assert novel_mask([s, n], [n]).tolist() == [True, False]
    assert novel_mask([None, s], [s]).tolist() == [False, False]


def test_empty_input_is_a_clear_error():
    with pytest.raises(EvaluationError, match='empty'): load_structures([])
    with pytest.raises(EvaluationError, match='empty'): evaluate([])
    with pytest.raises(EvaluationError, match='does not exist'): load_structures('/nonexistent/samples')


def test_evaluate_toy_crystals_against_themselves():
    crystals = list({c.formula: c for c in make_toy_crystals()}.values())[:12]      # one crystal per formula: @1 is the crystal itself
    df, summary = evaluate(crystals, reference=crystals[:6], targets=crystals)
    assert len(df) == 12 and summary['match_rate@1'] == 1.0 and summary['rmse@1'] == pytest.approx(0.0, abs=1e-6)
    assert summary['match_rate@k'] == 1.0
    assert df.novel.tolist() == [False] * 6 + [True] * 6
    assert summary['uniqueness'] == 1.0


# --- stability (CHGNet): one tiny structure, few steps ---

def test_chgnet_relaxation_lowers_the_energy():
    shaken = perovskite(); shaken.perturb(0.1, min_distance=0.05)
    df, relaxed = relax_structures([shaken, None], steps=5, fmax=0.05, device='cpu')
    assert df.energy_per_atom[0] <= df.initial_energy_per_atom[0] + 1e-6
    assert df.rmsd[0] > 0 and relaxed[0] is not None
    assert df.error[1] == 'no structure' and np.isnan(df.energy_per_atom[1])


def test_a_collapsing_cell_is_stopped():
    from pymatgen.core import Lattice, Structure
    loose = Structure(Lattice.cubic(4.0), ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])   # CsCl-type NaCl, far too large: it shrinks
    df, relaxed = relax_structures([loose, loose], steps=20, device='cpu', min_volume_ratio=0.99)
    assert len(df) == len(relaxed) == 2 and relaxed == [None, None]
    assert df.error[0].startswith('cell collapsed during relaxation') and np.isnan(df.energy_per_atom[0])
    df, relaxed = relax_structures([loose], steps=20, device='cpu')                      # the default allows shrinking to half
    assert df.error[0] is None and relaxed[0].volume < loose.volume
    crushed = Structure(Lattice.cubic(1.6), ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])  # 2 Å³/atom: never handed to CHGNet
    for steps in (0, 20):
        df, relaxed = relax_structures([crushed], steps=steps, device='cpu')
        assert df.error[0].startswith('denser than any real solid (2.0') and relaxed == [None]


@pytest.mark.skipif(datasets_root() is None or not (datasets_root() / 'mp_hull').is_dir(), reason='needs ../shared/datasets/mp_hull')
def test_hull_puts_elements_at_their_reference_on_the_hull():
    hull = ConvexHull()
    assert hull.e_above_hull('Si', hull.mu['Si']) == pytest.approx(0.0, abs=1e-9)
    assert hull.e_above_hull('Si', hull.mu['Si'] + 0.2) == pytest.approx(0.2, abs=1e-9)
    assert hull.e_above_hull_formation('NaCl', 0.0) > 1.0        # NaCl is strongly bound: zero formation energy is far above


# --- the command line ---

def write_csv(path, structures, column='cif'):
    pd.DataFrame({'material_id': [f'x{k}' for k in range(len(structures))],
                  column: [s.to(fmt='cif') for s in structures]}).to_csv(path, index=False)


@pytest.fixture
def samples(tmp_path):
    folder = tmp_path / 'samples'; folder.mkdir()
    crystals = make_toy_crystals()
    for k in range(3): (folder / f'gen_{k}.cif').write_text(crystals[k].to_cif())
    (folder / 'broken.cif').write_text('this is not a CIF file\n')
    write_csv(tmp_path / 'train.csv', [c.to_structure() for c in crystals[1:6]])
    write_csv(tmp_path / 'test.csv', [c.to_structure() for c in crystals[:2]])
    return folder


def run(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=300)


def test_cli_reports_a_malformed_cif_by_name_and_evaluates_the_rest(samples):
    r = run('evaluate', samples, '--reference', samples.parent / 'train.csv', '--targets', samples.parent / 'test.csv', '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'broken.cif' in r.stderr and 'Traceback' not in r.stderr
    out = samples.parent / 'samples_evaluation'
    df = pd.read_csv(out / 'per_structure.csv')
    assert sorted(df.file) == ['broken.cif', 'gen_0.cif', 'gen_1.cif', 'gen_2.cif']
    assert {'file', 'struct_valid', 'comp_valid', 'unique', 'novel', 'match', 'rms_dist'} <= set(df.columns)
    row = df.set_index('file')
    assert not row.loc['broken.cif', 'struct_valid'] and row.loc['gen_0.cif', 'struct_valid']
    assert not row.loc['gen_0.cif', 'novel'] and row.loc['gen_1.cif', 'match']
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['n_structures'] == 4 and metrics['n_readable'] == 3
    # a second run never overwrites the first: a new default folder, and an explicit --out with results is refused
    r2 = run('evaluate', samples, '--reference', samples.parent / 'train.csv', '--quiet')
    assert r2.returncode == 0 and (samples.parent / 'samples_evaluation-2' / 'metrics.json').exists()
    before = (out / 'metrics.json').read_text()
    r3 = run('evaluate', samples, '--reference', samples.parent / 'train.csv', '--out', out)
    assert r3.returncode == 2 and 'already holds results' in r3.stderr and (out / 'metrics.json').read_text() == before


def test_cli_missing_folder(tmp_path):
    write_csv(tmp_path / 'train.csv', [nacl()])
    r = run('evaluate', tmp_path / 'nowhere', '--reference', tmp_path / 'train.csv')
    assert r.returncode != 0
    assert 'does not exist' in r.stderr and len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr


def test_cli_wrong_column_name_in_reference(samples):
    write_csv(samples.parent / 'bad.csv', [nacl()], column='structure')
    r = run('evaluate', samples, '--reference', samples.parent / 'bad.csv', '--quiet')
    assert r.returncode != 0
    assert "no 'cif' column" in r.stderr and len(r.stderr.strip().splitlines()) <= 2 and 'Traceback' not in r.stderr
    assert not (samples.parent / 'samples_evaluation').exists()


def test_cli_missing_reference_file_and_no_arguments(samples):
    r = run('evaluate', samples, '--reference', samples.parent / 'nope.csv')
    assert r.returncode != 0 and 'nope.csv' in r.stderr and 'Traceback' not in r.stderr
    assert run().returncode != 0
    assert run('evaluate', samples).returncode != 0                      # --reference is required (argparse: exit 2)


def test_console_script_is_installed():
    import shutil
    exe = shutil.which('crystal-tutorial') or str(__import__('pathlib').Path(sys.executable).parent / 'crystal-tutorial')
    r = subprocess.run([exe, 'evaluate', '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and '--reference' in r.stdout


def test_a_nearly_flat_cell_is_measured_at_once():
    "A 2-step sample can be a sliver of a cell: the shortest lattice vector comes from the LLL-reduced basis, not a sphere search."
    from pymatgen.core import Lattice, Structure
    from crystal_tutorial.evaluation import shortest_lattice_vector
    sliver = Lattice([[50.0, 0, 0], [49.99, 0.01, 0], [0, 0, 30.0]])          # a sphere of radius 30 Å holds ~10⁷ of its points
    assert shortest_lattice_vector(sliver) == pytest.approx(0.01 * 2 ** 0.5)
    assert not structure_validity(Structure(sliver, ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    assert shortest_lattice_vector(Lattice.cubic(4.0)) == pytest.approx(4.0)
    assert shortest_lattice_vector(Lattice([[0, 2, 2], [2, 0, 2], [2, 2, 0]])) == pytest.approx(8 ** 0.5)   # fcc primitive cell


# --- the shipped hull reference (crystal_tutorial/weights/mp_hull_reference.npz) ---

def _no_datasets(monkeypatch):
    from crystal_tutorial import crystal_data
    monkeypatch.setenv(crystal_data.DATASETS_ENV, '/nonexistent/datasets')
    with pytest.warns(UserWarning, match='is not a folder'): assert datasets_root() is None


def test_shipped_hull_works_without_the_datasets(monkeypatch):
    _no_datasets(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        hull = ConvexHull()                                           # no datasets: the shipped file
    assert 'shipped' in repr(hull) and len(hull.mu) == 89 and len(hull.table) > 30_000
    assert hull.e_above_hull('Si', hull.mu['Si']) == pytest.approx(0.0, abs=1e-9)
    zno = hull.table[hull.table.material_id == 'mp-2133']             # ZnO (wurtzite), a stable training phase
    assert len(zno) == 1
    ef = zno.formation_energy_per_atom.iloc[0]
    assert hull.e_above_hull_formation('ZnO', ef) == pytest.approx(0.0, abs=1e-6)
    assert hull.e_above_hull_formation('ZnO', ef + 0.3) == pytest.approx(0.3, abs=1e-6)   # off the hull by 0.3 eV/atom
    assert hull.e_above_hull_formation('CeO2', 0.0) > 3.0            # CeO2 is strongly bound
    assert np.isnan(hull.e_above_hull_formation('Og', 0.0))           # no reference: NaN
    with pytest.raises(EvaluationError, match='shipped'): ConvexHull('datasets')


def test_shipped_hull_holds_no_held_out_crystal():
    from crystal_tutorial.stability import SHIPPED_HULL
    z = np.load(SHIPPED_HULL, allow_pickle=False)
    meta = json.loads(str(z['meta']))
    assert meta['n_dropped'] > 5000 and len(z['material_ids']) == len(z['formulas']) == len(z['formation_energy_per_atom'])
    assert z['formation_energy_per_atom'].dtype == np.float32 and np.isfinite(z['formation_energy_per_atom']).all()
    ids = set(z['material_ids'].tolist())
    assert 'mp-22862' not in ids and 'mp-2133' in ids                  # NaCl is an MPTS-52/MP-40 test crystal; ZnO is not
    root = datasets_root()
    if root is None or not (root / 'mp_mix_20').is_dir(): pytest.skip('needs ../shared/datasets to list the held-out ids')
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'scripts'))
    from build_prototype_pool import held_out_ids
    held_out = held_out_ids('mp', root)
    assert len(held_out) == meta['n_held_out_ids'] and not ids & held_out


def test_a_damaged_shipped_hull_is_a_one_line_error(tmp_path, monkeypatch):
    from crystal_tutorial import core, stability
    from crystal_tutorial.core import CheckpointError
    shipped = stability.SHIPPED_HULL
    weights = tmp_path / 'weights'; weights.mkdir()
    (weights / core.MANIFEST_NAME).write_text((shipped.parent / core.MANIFEST_NAME).read_text())
    damaged = weights / shipped.name
    damaged.write_bytes(shipped.read_bytes()[:-100] + b'\0' * 100)     # same size, other bytes
    monkeypatch.setattr(core, 'WEIGHTS_DIR', weights)
    monkeypatch.setattr(stability, 'SHIPPED_HULL', damaged)
    with pytest.raises(CheckpointError) as e: ConvexHull('shipped')
    assert '\n' not in str(e.value) and 'SHA-256' in str(e.value)
    other = tmp_path / 'my_hull.npz'                                  # not a shipped file: no manifest, read and refused
    other.write_bytes(shipped.read_bytes()[:1000])
    with pytest.raises(EvaluationError) as e: ConvexHull(other)
    assert '\n' not in str(e.value) and 'not a readable hull reference' in str(e.value)
    with pytest.raises(EvaluationError, match='build_hull_reference'): ConvexHull(tmp_path / 'missing.npz')


@pytest.mark.parametrize('material_id, formula, e_hull', [
    ('mp-15650', 'RuAs', 0.035756),          # energies above the full MP-20 hull (datasets folder, mp_hull),
    ('mp-867888', 'LiTm2Pt', 0.027701),      # measured with ConvexHull('datasets'); training phases, so they ship
    ('mp-1245538', 'MnZnN2', 0.032032),
])
def test_shipped_hull_gives_known_energies_above_hull(material_id, formula, e_hull):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        hull = ConvexHull('shipped')
    row = hull.table[hull.table.material_id == material_id]
    assert len(row) == 1
    ef = row.formation_energy_per_atom.iloc[0]
    assert hull.e_above_hull_formation(formula, ef) == pytest.approx(e_hull, abs=1e-3)   # within 1 meV/atom
