"""Formulas followed by construction (chapter 24) and cells up to 40 atoms, through the library and the command line."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from crystal_tutorial.constraints import (FormulaConstraint, assign_atoms, cell_counts, cell_sizes, check_cell_size,
                                          orbit_assignments, orbits_fit)
from crystal_tutorial.prompt_words import PromptError

CLI = [sys.executable, '-c', 'import sys; from crystal_tutorial.cli import main; sys.exit(main())']


@pytest.fixture(scope='module')
def general():
    from crystal_tutorial.chameleon import Chameleon
    return Chameleon.load_general_text_model()


@pytest.fixture(scope='module')
def composition():
    from crystal_tutorial.chameleon import Chameleon
    return Chameleon.load_composition_model()


@pytest.mark.parametrize('formula, n, ok', [({'Dy': 3, 'In': 5}, 16, True), ({'Dy': 3, 'In': 5}, 12, False),
                                            ({'Ca': 2, 'Ti': 2, 'O': 6}, 5, True), ({'Ba': 8, 'O': 33}, 41, False)])
def test_check_cell_size(formula, n, ok):
    if ok: assert check_cell_size(formula, n, 40) == n
    else:
        with pytest.raises(PromptError) as e: check_cell_size(formula, n, 40)
        assert '\n' not in str(e.value)


def test_nearest_sizes_named():
    with pytest.raises(PromptError, match='use n_atoms=32 or 40'): check_cell_size({'Dy': 3, 'In': 5}, 45, 40)
    assert cell_sizes({'Ti': 1, 'O': 2}, 10) == [3, 6, 9]


def test_assign_atoms_gives_exact_counts_and_the_best_assignment():
    scores = torch.randn(30, 100, generator=torch.Generator().manual_seed(1)).log_softmax(-1)
    types = assign_atoms(scores, {8: 20, 22: 10})
    assert torch.bincount(types, minlength=100)[[7, 21]].tolist() == [20, 10]
    rng = np.random.default_rng(0)                               # no random relabelling with the same counts scores higher
    best = scores[torch.arange(30), types].sum()
    for _ in range(50):
        perm = torch.as_tensor(rng.permutation(types.numpy()))
        assert scores[torch.arange(30), perm].sum() <= best + 1e-6


def test_orbit_assignments():
    assert orbit_assignments((2, 2), (1, 3)) is None
    cand = orbit_assignments((4, 2, 2, 4, 4), (4, 12))
    m = np.array([4, 2, 2, 4, 4])
    assert len(cand) and all(((m * (c == 0)).sum(), (m * (c == 1)).sum()) == (4, 12) for c in cand)
    assert orbits_fit((2, 2), {8: 3, 22: 1}) is False and orbits_fit((1, 3), {22: 1, 8: 3}) is True


def test_constraint_rejects_a_formula_of_another_size():
    with pytest.raises(ValueError, match='has 4 atoms'): FormulaConstraint([{8: 2, 22: 1}], [4])


@pytest.mark.parametrize('prompt, n_atoms', [('Ba2NdMoO6', 20), ('DyRh3C', 10), ('K₂Cd₃S₄', 9)])
def test_diffusion_samples_hold_the_formula(composition, prompt, n_atoms):
    from pymatgen.core import Composition
    from crystal_tutorial.prompt_words import clean_prompt
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        atoms = composition.sample(prompt, n_atoms=n_atoms, n_samples=2, steps=10, seed=0, route='diffusion')
    want = Composition(clean_prompt(prompt)).reduced_formula
    assert len(atoms) == 2 and all(Composition(a.get_chemical_formula()).reduced_formula == want and len(a) == n_atoms for a in atoms)


def test_a_40_atom_prompt_samples_on_cpu(general):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        atoms = general.sample('Orthorhombic crystal structure of Dy₃In₅ with metallic properties.', n_atoms=40, n_samples=1,
                               steps=5, seed=0, route='diffusion')
    assert len(atoms) == 1 and len(atoms[0]) == 40
    assert sorted(atoms[0].get_chemical_symbols()) == ['Dy'] * 15 + ['In'] * 25
    assert general.max_atoms == 40 and general.trained_max_atoms == 20


def test_formula_prompt_defaults_to_its_written_cell(general):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        atoms = general.sample('Ba2NdMoO6', n_samples=1, steps=5, seed=0, route='diffusion', symmetry=None)
    assert len(atoms[0]) == 10


def test_symmetry_and_formula_together(general):
    from crystal_tutorial.adherence import crystal_system_of
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        atoms = general.sample('Cubic crystal structure of Ba2NdMoO6', n_atoms=10, n_samples=2, steps=20, seed=0, route='diffusion')
    assert all(sorted(a.get_chemical_symbols()).count('O') == 6 for a in atoms)
    assert all(a.info.get('template_spacegroup', 0) >= 195 for a in atoms)       # drawn inside a cubic template


def test_a_formula_no_template_holds_gets_a_subgroup_of_the_asked_system(general):
    # the cubic 9-atom templates have orbits 2 + 1 + 6 or 1 + 1 + 3 + 4; NaCaIrH6 needs 1 + 1 + 1 + 6: F-43m of Fm-3m
    from crystal_tutorial.adherence import crystal_system_of
    from crystal_tutorial.prompt_words import PromptWarning
    with warnings.catch_warnings():
        warnings.simplefilter('error', PromptWarning)                          # no "generated without the symmetry"
        atoms = general.sample('Cubic crystal structure of NaCaH6Ir', n_atoms=9, n_samples=2, steps=20, seed=0,
                               route='diffusion')
    assert all(sorted(a.get_chemical_symbols()) == ['Ca', 'H', 'H', 'H', 'H', 'H', 'H', 'Ir', 'Na'] for a in atoms)
    assert all(195 <= a.info['template_spacegroup'] < 225 for a in atoms)       # a cubic subgroup of Fm-3m
    assert all(crystal_system_of(a) == 'cubic' for a in atoms)


def test_a_cell_size_without_whole_units_is_refused_before_sampling(composition):
    with pytest.raises(PromptError, match='whole formula units'):
        composition.sample('SrTiO3', n_atoms=7, n_samples=1, steps=5, route='diffusion')


@pytest.mark.parametrize('argv, message', [
    (['Dy3In5', '--n-atoms', '12'], 'use n_atoms=8 or 16'),
    (['Ti2O3)('], 'unbalanced brackets'),
    (['Xx2O3'], 'Xx'),
    (['SrTiO3', '--n-atoms', '45'], 'n_atoms'),
    (['--model', 'general', 'a cubic crystal of flubberite'], "'flubberite' looks like a mineral name"),
])
def test_cli_bad_formula_requests(tmp_path, argv, message):
    out = tmp_path / 'out'
    r = subprocess.run(CLI + ['generate', *argv, '--n-samples', '1', '--steps', '5', '--out', str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and 'Traceback' not in r.stderr
    assert not out.exists()


def test_cells_beyond_the_trained_ones_skip_the_corrector(general, monkeypatch):
    # the general model's own corrector on its trained sizes (step_lr None: the model's), none beyond unless asked
    from crystal_tutorial import chameleon
    seen, real = [], chameleon.sample_crystals
    def spy(*args, **kwargs):
        seen.append(kwargs['step_lr'])
        return real(*args, **{**kwargs, 'steps': 2})
    monkeypatch.setattr(chameleon, 'sample_crystals', spy)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for n, step_lr in ((8, None), (24, None), (24, 1e-5)):
            general.sample('Ti O', n_atoms=n, n_samples=1, seed=0, route='diffusion', retries=0, step_lr=step_lr)
    assert general.trained_max_atoms == 20
    assert seen == [None, 0.0, 1e-5]
