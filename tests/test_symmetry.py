"""Sampling inside a space group (notebook 14): the shipped template pool, bad files, and what `Chameleon.sample` and the
command line do with a symmetry."""
import json
import subprocess
import sys

import numpy as np
import pytest

from crystal_tutorial.chameleon import SHIPPED_CHAMELEON_MODELS, Chameleon, PromptError, needs_redraw
from crystal_tutorial.adherence import crystal_system_of
from crystal_tutorial.crystal_data import crystal_system
from crystal_tutorial.core import WEIGHTS_DIR
from crystal_tutorial.symmetry import SHIPPED_TEMPLATES, SymmetryTemplates, load_symmetry_templates

CLI = [sys.executable, '-c', 'import sys; from crystal_tutorial.cli import main; sys.exit(main())']
SHIPPED = all((WEIGHTS_DIR / f).exists() for f in [*SHIPPED_CHAMELEON_MODELS.values(), *SHIPPED_TEMPLATES.values()])
pytestmark = pytest.mark.skipif(not SHIPPED, reason='the Chameleon weights or the template pool are not shipped in this checkout')


def test_shipped_pool_is_consistent():
    pool = load_symmetry_templates('mp_mix_20')
    assert len(pool) > 1000 and pool.counts.sum() > 10_000
    for i in np.random.default_rng(0).choice(len(pool), 200, replace=False):
        t = pool[int(i)]
        assert all(sorted(p.tolist()) == list(range(t.num_atoms)) for p in t.perm)             # every operation permutes the atoms
        assert np.allclose(np.abs(np.linalg.det(t.rotations.astype(float))), 1)
        assert t.multiplicities.sum() == t.num_atoms
    assert set(pool.systems) == {'triclinic', 'monoclinic', 'orthorhombic', 'tetragonal', 'trigonal', 'hexagonal', 'cubic'}


def test_projection_makes_every_operation_a_symmetry():
    "From random noise, the projected crystal satisfies every operation of its template exactly (lattice metric and atoms)."
    import torch
    from crystal_tutorial.symmetry import SymmetryConstraint
    pool, rng, g = load_symmetry_templates('mp_mix_20'), np.random.default_rng(1), torch.Generator().manual_seed(1)
    picked = [pool[int(i)] for i in rng.choice(len(pool), 100, replace=False)]
    sizes = [t.num_atoms for t in picked]
    con = SymmetryConstraint(picked, sizes)                                              # all at once, as in a batched chain
    lattice, frac, _ = con.project(torch.randn(len(picked), 3, 3, generator=g, dtype=torch.float64),
                                   torch.rand(sum(sizes), 3, generator=g, dtype=torch.float64))
    start = 0
    for b, t in enumerate(picked):
        x, metric = frac[start:start + t.num_atoms].numpy(), (lattice[b] @ lattice[b].T).numpy()
        start += t.num_atoms
        for W, tr, perm in zip(t.rotations.astype(float), t.translations.astype(float), t.perm):
            d = x @ W.T + tr - x[perm]
            assert np.abs(d - np.round(d)).max() < 1e-5, (t, 'atoms')
            assert np.abs(W.T @ metric @ W - metric).max() < 1e-8 * max(1.0, np.abs(metric).max()), (t, 'lattice')


def test_corrupt_or_missing_pool_is_a_clear_error(tmp_path):
    bad = tmp_path / 'pool.npz'
    bad.write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(ValueError, match='not a readable symmetry-template file'):
        SymmetryTemplates.load(bad)
    assert bad.read_bytes().startswith(b'PK')                                               # the user's file is left alone
    with pytest.raises(FileNotFoundError, match='build_symmetry_templates'):
        SymmetryTemplates.load(tmp_path / 'missing.npz')


@pytest.fixture(scope='module')
def general():
    return Chameleon.load_general_text_model(device='cpu')


def test_a_prompt_naming_a_crystal_system_gives_that_system(general):
    known = general.sample('Cubic crystal structure of NaCl compound', n_atoms=8, n_samples=2)    # route 'auto': prototypes
    assert all(a.info['route'] == 'prototype' and crystal_system_of(a) == 'cubic' for a in known)
    atoms_list = general.sample('Cubic crystal structure of NaCl compound', n_atoms=8, n_samples=3, steps=30, seed=0, route='diffusion')
    assert len(atoms_list) == 3
    for atoms in atoms_list:
        assert crystal_system(atoms.info['template_spacegroup']) == 'cubic'
        assert set(atoms.get_chemical_symbols()) == {'Na', 'Cl'}
        if not needs_redraw(atoms): assert crystal_system_of(atoms) == 'cubic'
    assert sum(not needs_redraw(a) for a in atoms_list) >= 2
    free = general.sample('Cubic crystal structure of NaCl compound', n_atoms=8, n_samples=1, steps=5, seed=0, symmetry=None, retries=0,
                          route='diffusion')
    assert 'template_spacegroup' not in free[0].info


def test_samples_of_one_prompt_get_different_templates(general, monkeypatch):
    import crystal_tutorial.chameleon as chameleon
    seen = []
    class Recording(chameleon.SymmetryConstraint):
        def __init__(self, templates, num_atoms):
            seen.append(list(templates)); super().__init__(templates, num_atoms)
    monkeypatch.setattr(chameleon, 'SymmetryConstraint', Recording)
    general.sample_batch(['Cubic crystal structure of NaCl compound'] * 6, [8] * 6, steps=2, seed=0)
    fits = len(load_symmetry_templates().candidates('cubic', num_atoms=8, min_orbits=2))
    assert fits >= 6 and len({id(t) for t in seen[0]}) == 6              # six samples, six different templates


def test_space_group_and_cell_size_from_the_templates(general):
    atoms_list = general.sample('NaCl in space group Fm-3m', n_samples=2, steps=10, seed=1, retries=0, route='diffusion')
    assert [a.info['template_spacegroup'] for a in atoms_list] == [225, 225]
    sizes = set(load_symmetry_templates().num_atoms[load_symmetry_templates().spacegroups == 225].tolist())
    assert all(len(a) in sizes for a in atoms_list)


def test_composition_prompts_are_left_alone_unless_asked():
    model = Chameleon.load_composition_model(device='cpu')
    assert model.wanted_symmetry('auto', 'P1 Li') == (None, None)                          # 'P1' is phosphorus here
    atoms = model.sample('Ti O S', n_atoms=8, n_samples=1, steps=5, seed=0, retries=0)[0]
    assert 'template_spacegroup' not in atoms.info
    atoms = model.sample('Ti O S', n_atoms=8, n_samples=1, steps=5, seed=0, retries=0, symmetry='tetragonal')[0]
    assert crystal_system(atoms.info['template_spacegroup']) == 'tetragonal'


@pytest.mark.parametrize('kwargs, message', [
    (dict(symmetry='cubik'), 'unknown symmetry'),
    (dict(symmetry=231), '1 to 230'),
    (dict(symmetry=225, n_atoms=19), 'atoms have one'),
])
def test_bad_symmetry_requests_are_one_line_errors(general, kwargs, message):
    with pytest.raises(PromptError, match=message) as e:
        general.sample('a crystal of Na and Cl', **{'n_atoms': 8, 'steps': 2, **kwargs})
    assert '\n' not in str(e.value)


def test_cli_symmetry(tmp_path):
    out = tmp_path / 'gen'
    r = subprocess.run(CLI + ['generate', 'Ti O S', '--n-atoms', '8', '--n-samples', '1', '--steps', '5', '--seed', '0', '--symmetry', 'tetragonal',
                              '--out', str(out), '--device', 'cpu', '--quiet', '--retries', '0'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['crystal_system'] == 'tetragonal' and summary['spacegroup'] is None
    r = subprocess.run(CLI + ['generate', 'Ti O S', '--n-atoms', '8', '--symmetry', 'cubik', '--out', str(tmp_path / 'bad')],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'unknown symmetry' in r.stderr
    assert not (tmp_path / 'bad').exists()
