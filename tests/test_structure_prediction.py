"""Structure prediction from prototypes (chapter 15): the shipped pools, retrieval, ranking and `crystal-tutorial predict`."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from crystal_tutorial.crystal_data import datasets_root
from crystal_tutorial.structure_prediction import (SHIPPED_POOLS, Candidate, PredictionError, PrototypePool, formula_key,
                                                   load_prototype_pool, parse_composition, predict_structure, rank, retrieve)

CLI = [sys.executable, '-c', 'import sys; from crystal_tutorial.cli import main; sys.exit(main())']
HELD_OUT = [('mp_mix_20', 'test.csv.gz'), ('mp_mix_20', 'val.csv.gz'), ('mpts_52', 'test.csv.gz'), ('mp_40_chemeleon', 'test.csv'),
            ('mp_40_chemeleon', 'mineral/test.csv'), ('mp_40_chemeleon', 'random_split/test.csv')]


@pytest.fixture(scope='module')
def pool():
    return load_prototype_pool('mp')


@pytest.mark.skipif(datasets_root() is None, reason='the datasets folder is not on this machine')
@pytest.mark.parametrize('name,file', HELD_OUT)
def test_no_test_crystal_is_in_the_shipped_pool(pool, name, file):
    ids = set(pd.read_csv(datasets_root() / name / file, usecols=['material_id']).material_id.astype(str))
    assert ids and not ids & set(pool.material_ids)


@pytest.mark.skipif(datasets_root() is None, reason='the datasets folder is not on this machine')
def test_no_perov5_test_crystal_is_in_its_pool():
    ids = set(pd.read_csv(datasets_root() / 'perov_5' / 'test.csv', usecols=['material_id']).material_id.astype(str))
    assert not ids & set(load_prototype_pool('perov_5').material_ids)


def test_a_training_composition_returns_the_crystal_itself(pool):
    from crystal_tutorial.evaluation import make_matcher
    for i in [0, 1234, 9000]:
        cands = retrieve(pool.counts[i], pool, n=100)
        own = [c for c in cands if c.material_id == pool.material_ids[i]]
        same = [c for c in cands if make_matcher().fit(c.structure, pool.structure(i))]
        assert own or same, f'{pool.material_ids[i]} not retrieved for its own composition'


def test_substitution_keeps_the_prototype_space_group(pool):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    cands = retrieve('Ga2Te3', pool, n=5) + retrieve('BaZrS3', pool, n=5)
    assert len(cands) == 10
    for c in cands: assert SpacegroupAnalyzer(c.structure, symprec=0.1).get_space_group_number() == c.spacegroup


def test_ranking_prefers_the_lower_chgnet_energy(pool):
    good = retrieve('NaCl', pool, n=1)[0]
    bad = Candidate(good.structure.copy(), 'prototype', 'squeezed', good.spacegroup, {}, good.log_prob)
    bad.structure.scale_lattice(good.structure.volume * 0.55)
    ranked = rank([bad, good])
    assert ranked[0] is good and ranked[0].energy_per_atom < ranked[1].energy_per_atom


def test_predict_structure_gives_k_ranked_candidates_with_provenance(pool):
    cands = predict_structure('Ga2Te3', k=3, pool=pool)
    assert len(cands) == 3 and all(c.route == 'prototype' and c.material_id in pool.material_ids for c in cands)
    atoms = cands[0].to_atoms()
    assert atoms.info['prototype'] == cands[0].material_id and atoms.get_chemical_formula(empirical=True) == 'Ga2Te3'


@pytest.mark.parametrize('bad,message', [('', 'empty formula'), ('Xx2', "unknown element 'Xx'"), ('Ga2.5Te3', 'fractional'),
                                         ('not a formula', 'cannot read'), ('Ga30Te30', 'at most 52')])
def test_bad_compositions_are_one_line_errors(bad, message):
    with pytest.raises(PredictionError, match=message): predict_structure(bad)


def test_a_corrupt_pool_file_is_a_clear_error(tmp_path):
    (tmp_path / 'pool.npz').write_bytes(b'\x00' * 100)
    with pytest.raises(PredictionError, match='not a readable prototype pool'): PrototypePool.load(tmp_path / 'pool.npz')
    with pytest.raises(PredictionError, match='no prototype pool'): PrototypePool.load(tmp_path / 'missing.npz')


def run(*argv):
    return subprocess.run(CLI + ['predict', *map(str, argv)], capture_output=True, text=True, timeout=600)


def test_cli_predict_a_formula(tmp_path):
    r = run('Ga2Te3', '--k', '3', '--out', tmp_path / 'out')
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (tmp_path / 'out').iterdir())
    assert files == ['Ga2Te3.cif', 'Ga2Te3_k2.cif', 'Ga2Te3_k3.cif', 'summary.json']
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert summary['targets'][0]['candidates'][0]['route'] == 'prototype' and summary['prototype_share'] == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]            # no temporary folder left


def test_cli_predict_a_csv_of_targets(tmp_path):
    from crystal_tutorial.structure_prediction import load_prototype_pool
    pool = load_prototype_pool('mp')
    cifs = [pool.structure(i).to(fmt='cif') for i in (3, 4)]
    pd.DataFrame({'material_id': ['a-1', 'b-2'], 'cif': cifs}).to_csv(tmp_path / 'targets.csv', index=False)
    r = run(tmp_path / 'targets.csv', '--k', '2', '--out', tmp_path / 'out', '--quiet')
    assert r.returncode == 0, r.stderr
    assert {'a-1.cif', 'a-1_k2.cif', 'b-2.cif', 'b-2_k2.cif', 'summary.json'} <= {p.name for p in (tmp_path / 'out').iterdir()}


def test_cli_predict_workers_give_the_same_files(tmp_path):
    "--workers 2 shares a CSV's compositions between two processes: the same summary rows and the same CIF files."
    pd.DataFrame({'formula': ['NaCl', 'TiO2', 'ZnS']}).to_csv(tmp_path / 'targets.csv', index=False)
    for w in (1, 2):
        r = run(tmp_path / 'targets.csv', '--k', '2', '--out', tmp_path / f'w{w}', '--quiet', '--workers', w)
        assert r.returncode == 0, r.stderr
    rows = [[{k: v for k, v in t.items() if k != 'seconds'} for t in json.loads((tmp_path / f'w{w}' / 'summary.json').read_text())['targets']]
            for w in (1, 2)]
    assert rows[0] == rows[1] and [t['name'] for t in rows[0]] == ['row_0', 'row_1', 'row_2']      # in the CSV's order
    cifs = sorted(p.name for p in (tmp_path / 'w1').glob('*.cif'))
    assert len(cifs) == 6 and cifs == sorted(p.name for p in (tmp_path / 'w2').glob('*.cif'))
    assert all((tmp_path / 'w1' / n).read_text() == (tmp_path / 'w2' / n).read_text() for n in cifs)
    r = run(tmp_path / 'targets.csv', '--out', tmp_path / 'w0', '--workers', 0)
    assert r.returncode == 2 and '--workers must be at least 1' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'w0').exists()


@pytest.mark.parametrize('target,message', [('Xx2', 'unknown element'), ('', 'empty formula'), ('((', 'cannot read'),
                                            ('Ga30Te30', 'at most 52'), ('nocolumns.csv', 'no composition, formula or cif column'),
                                            ('missing.csv', 'does not exist')])
def test_cli_predict_bad_input_is_one_line_and_writes_nothing(tmp_path, target, message):
    pd.DataFrame({'material_id': ['x'], 'energy': [1.0]}).to_csv(tmp_path / 'nocolumns.csv', index=False)
    if target.endswith('.csv'): target = tmp_path / target
    r = run(target, '--out', tmp_path / 'out')
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'Traceback' not in r.stderr and not (tmp_path / 'out').exists()


def test_cli_predict_never_overwrites(tmp_path):
    out = tmp_path / 'out'; out.mkdir(); (out / 'keep.txt').write_text('mine')
    r = run('NaCl', '--out', out)
    assert r.returncode == 0, r.stderr                                     # results go in beside the user's own file
    assert (out / 'keep.txt').read_text() == 'mine' and (out / 'summary.json').exists()
    before = (out / 'summary.json').read_text()
    r = run('NaCl', '--out', out)
    assert r.returncode == 2 and 'already holds results' in r.stderr
    assert (out / 'summary.json').read_text() == before


def test_cli_generate_answers_formulas_from_prototypes(tmp_path):
    r = subprocess.run(CLI + ['generate', 'Ga2Te3', '--n-samples', '2', '--out', str(tmp_path / 'out'), '--quiet'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert summary['from_prototypes'] == 2 and summary['n_generated'] == 2


def test_chameleon_route_prototype_for_an_element_list():
    from crystal_tutorial.chameleon import Chameleon, PromptError
    model = Chameleon.load_composition_model()
    atoms = model.sample('Ti O S', n_atoms=8, n_samples=3, route='prototype')
    assert len(atoms) == 3 and all(a.info['route'] == 'prototype' and len(a) == 8 for a in atoms)
    assert not model.uses_prototypes('Ti O S') and model.uses_prototypes('TiO2')
    with pytest.raises(PromptError, match='route must be'): model.sample('TiO2', route='sideways')
    with pytest.raises(PromptError, match='trajectories come from diffusion'): model.sample('TiO2', route='prototype', return_trajectory=True)
