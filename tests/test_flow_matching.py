"""Crystal flow matching (notebook 16): the torus path, the ODE solvers, training, reproducible sampling, bad
step counts, loading the shipped flow model (skipped until it ships), and the training script."""
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crystal_tutorial.learner import loss_drops_on_batch
from crystal_tutorial.crystal_diffusion import config_for_data
from crystal_tutorial.crystals import toy_dataset
from crystal_tutorial.crystal_graphs import collate_crystals
from crystal_tutorial.flow_matching import (SHIPPED_FLOWS, SOLVERS, WEIGHTS_DIR, CrystalFlow,
                                            flow_dng_benchmark, flow_from_checkpoint, load_crystal_flow,
                                            ode_solve, sample_flow, torus_path, type_velocity, wrap01, wrap_diff)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=16, n_layers=2, n_freq=4, time_dim=16)
SHIPPED = WEIGHTS_DIR / SHIPPED_FLOWS['perov5_csp'][0]


@pytest.fixture(scope='module')
def toy():
    return toy_dataset()


@pytest.fixture(scope='module')
def model(toy):
    torch.manual_seed(0)
    return CrystalFlow(config_for_data(toy, task='csp', **TINY)).set_data_stats(toy)


def test_torus_path_goes_the_short_way_and_stays_on_the_torus():
    f0, f1 = torch.tensor([[0.97, 0.02, 0.4]]), torch.tensor([[0.03, 0.99, 0.6]])
    _, u = torus_path(f0, f1, torch.tensor(0.0))
    assert torch.allclose(u, torch.tensor([[0.06, -0.03, 0.2]]), atol=1e-6)
    ft, _ = torus_path(f0.expand(201, 3), f1.expand(201, 3), torch.linspace(0, 1, 201)[:, None])
    assert ((ft >= 0) & (ft < 1)).all()
    assert wrap_diff(ft[-1] - f1[0]).abs().max() < 1e-6
    assert (wrap01(torch.tensor([-1e-9, -1e-12, 1.0])) < 1).all()


@pytest.mark.parametrize('method,order', [('euler', 1), ('heun', 2), ('midpoint', 2)])
def test_solvers_converge_at_their_order(method, order):
    err = [abs(ode_solve(lambda xs, t: xs, (torch.tensor(1.0, dtype=torch.float64),), n,
                         method)[0].item() - math.e) for n in (20, 40)]
    assert abs(math.log2(err[0] / err[1]) - order) < 0.2


@pytest.mark.parametrize('steps', [0, -3, 2.5, True])
def test_steps_below_one_is_a_one_line_error(model, toy, steps):
    with pytest.raises(ValueError, match='steps must be a whole number') as e:
        sample_flow(model, [toy[0]], steps=steps)
    assert '\n' not in str(e.value)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(toy):
    torch.manual_seed(1)
    m = CrystalFlow(config_for_data(toy, task='csp', **TINY)).set_data_stats(toy)
    batch = collate_crystals([toy[i] for i in range(16)])
    before, after = loss_drops_on_batch(m, lambda m,
                                        b: m.loss(b,
                                                  generator=torch.Generator().manual_seed(0)), batch, steps=1, lr=1e-4)
    assert after < before


def test_sampling_with_a_seed_is_reproducible(model, toy):
    comps = [toy[i] for i in range(3)]
    a, b = (sample_flow(model, comps, steps=3, method='heun',
                        generator=torch.Generator().manual_seed(7)) for _ in range(2))
    assert all(torch.equal(x.frac_coords, y.frac_coords) and torch.equal(x.lattice, y.lattice) for x,
               y in zip(a, b))
    c = sample_flow(model, comps, steps=3, method='heun', generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a[0].frac_coords, c[0].frac_coords)


def test_a_diffusion_checkpoint_is_not_read_as_a_flow(model):
    with pytest.raises(ValueError, match='does not hold a CrystalFlow'):
        flow_from_checkpoint({'config': {}, 'model': model.state_dict()})


@pytest.mark.skipif(not SHIPPED.exists(), reason='the Perov-5 flow model is not shipped')
def test_shipped_flow_model_loads_and_samples_on_cpu():
    flow = load_crystal_flow('perov5_csp', device='cpu')
    assert SHIPPED.stat().st_size < 20 * 2**20
    out = sample_flow(flow, ['SrTiO3', 'BaZrO3'], steps=10, method='heun',
                      generator=torch.Generator().manual_seed(0))
    assert [c.num_atoms for c in out] == [5, 5]
    assert all(2.5 < c.lattice.det().abs() ** (1 / 3) < 7 for c in out)        # a perovskite-sized cell, Å


def test_training_script_runs_and_resumes(tmp_path):
    out = tmp_path / 'flow.pt'
    cmd = [sys.executable, str(ROOT / 'scripts/train_crystal_flow.py'), '--dataset', 'toy', '--limit', '40',
           '--hidden', '16',
           '--n-layers', '1', '--time-dim', '16', '--batch-size', '20', '--threads', '1', '--out', str(out)]
    for epochs in ('1', '2'):
        r = subprocess.run(cmd + ['--epochs', epochs], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
    assert 'resuming' in r.stdout
    flow = load_crystal_flow(out)
    assert isinstance(flow, CrystalFlow) and flow.config.epochs == 2


def test_benchmark_steps_below_one_is_a_one_line_error():
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks/eval_crystal_flow.py'), '--steps', '0'],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].endswith('--steps must be 1 or more ODE steps, got 0')


@pytest.fixture(scope='module')
def dng(toy):
    torch.manual_seed(0)
    return CrystalFlow(config_for_data(toy, task='dng', **TINY)).set_data_stats(toy)


def test_dng_flow_loss_has_a_type_term_and_a_step_lowers_it(toy):
    torch.manual_seed(2)
    m = CrystalFlow(config_for_data(toy, task='dng', **TINY)).set_data_stats(toy)
    batch = collate_crystals([toy[i] for i in range(16)])
    loss = lambda m, b: m.loss(b, generator=torch.Generator().manual_seed(0))
    assert set(loss(m, batch)) == {'loss', 'lattice', 'coord', 'type'}
    before, after = loss_drops_on_batch(m, loss, batch, steps=1, lr=1e-4)
    assert after < before


def test_type_velocity_ends_on_the_predicted_probabilities():
    a_t, logits = torch.randn(4, 6), torch.randn(4, 6)
    h = 0.25                                  # the last Euler step, from t = 1 − h, lands on p̂
    assert torch.allclose(a_t + h * type_velocity(logits, a_t, 1 - h), logits.softmax(-1), atol=1e-6)
    seen = torch.tensor([True, True, False, True, False, True])
    v = type_velocity(logits, torch.zeros(4, 6), 0.0, seen)
    assert (v[:, ~seen] == 0).all()


def test_dng_sampling_is_reproducible_and_uses_seen_elements_only(dng):
    a, b = (sample_flow(dng, n=4, steps=3, generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert [c.atom_types.tolist() for c in a] == [c.atom_types.tolist() for c in b]
    assert all(torch.equal(x.frac_coords, y.frac_coords) for x, y in zip(a, b))
    assert all(dng.type_counts[c.atom_types].gt(0).all() for c in a)
    assert all(dng.num_atoms_counts[c.num_atoms] > 0 for c in a)


@pytest.mark.parametrize('call,message', [(lambda m, c: sample_flow(m['dng'], [c]), 'give n='),
                                          (lambda m, c: sample_flow(m['csp'], n=2), 'give compositions'),
                                          (lambda m, c: sample_flow(m['dng'], n=0), 'n must be'),
                                          (lambda m, c: sample_flow(m['dng'], n=2, steps=0), 'steps must be')])
def test_dng_and_csp_misuse_is_a_one_line_error(dng, model, toy, call, message):
    with pytest.raises(ValueError, match=message) as e:
        call({'dng': dng, 'csp': model}, toy[0])
    assert '\n' not in str(e.value)


def test_training_script_trains_a_dng_flow(tmp_path):
    out = tmp_path / 'dng.pt'
    r = subprocess.run([sys.executable, str(ROOT / 'scripts/train_crystal_flow.py'), '--dataset', 'toy', '--limit', '40',
                        '--task', 'dng', '--hidden', '16', '--n-layers', '1', '--time-dim', '16', '--batch-size', '20',
                        '--epochs', '1', '--threads', '1', '--out', str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    flow = load_crystal_flow(out)
    assert flow.task == 'dng' and 'valid_type' in flow_history(out)
    assert len(sample_flow(flow, n=2, steps=2, generator=torch.Generator().manual_seed(0))) == 2
    # the benchmark measures a DNG flow with chapter 08's DNG figures, one row per setting
    r = subprocess.run([sys.executable, str(ROOT / 'benchmarks/eval_crystal_flow.py'), str(out),
                        '--dataset', 'toy', '--split', 'train', '--n', '6', '--methods', 'euler', 'heun',
                        '--steps', '2'],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith('flow ')]
    assert len(rows) == 2 and all('valid' in line and 'COV-R' in line for line in rows)
    assert 'evals     2' in rows[0] and 'evals     4' in rows[1]


def test_dng_benchmark_misuse_is_a_one_line_error(dng, model, toy):
    for call, message in ((lambda: flow_dng_benchmark(model, 4, [toy[0]]), 'needs a DNG flow'),
                          (lambda: flow_dng_benchmark(dng, 0, [toy[0]]), 'n must be')):
        with pytest.raises(ValueError, match=message) as e: call()
        assert '\n' not in str(e.value)


def flow_history(path) -> dict:
    return torch.load(path, weights_only=True)['history'][-1]
