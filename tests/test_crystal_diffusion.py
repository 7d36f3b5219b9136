"""Crystal diffusion (notebook 11): the wrapped-normal score, the symmetries of the denoiser, training, sampling, checkpoints,
the shipped weights (skipped until they ship), bad arguments, and the training script."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crystal_tutorial.core import get_device
from crystal_tutorial.learner import loss_drops_on_batch
from crystal_tutorial.core import WEIGHTS_DIR
from crystal_tutorial.crystal_diffusion import (SHIPPED_MODELS, CrystalDiffusion,
                                                CrystalDiffusionConfig, CSPNet, config_for_data,
                                                crystal_diffusion_learner, equivariance_errors,
                                                load_crystal_diffusion, resume_training, save_training_state)
from crystal_tutorial.crystal_sampling import (AllowedElements, ChargeBalance, RequiredElements,
                                               MEASURES_FILE, balance_types, balanced_counts,
                                               formula_to_atom_types, record_measure, sample_crystals,
                                               shipped_measures)
from crystal_tutorial.crystal_noise import (atom_types_to_onehot, wrapped_normal_logpdf, wrapped_normal_score,
                                            wrapped_score_norm)
from crystal_tutorial.crystals import toy_dataset, wrap_frac
from crystal_tutorial.crystal_graphs import collate_crystals

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=16, n_layers=2, n_freq=4, time_dim=16, n_steps=20)


@pytest.fixture(scope='module')
def toy():
    return toy_dataset()


@pytest.fixture(scope='module')
def models(toy):
    torch.manual_seed(0)
    cfg = config_for_data(toy, **TINY)
    return {task: CrystalDiffusion(replace(cfg, task=task)).set_data_stats(toy) for task in ('csp', 'dng')}


# --- the wrapped normal ---

@pytest.mark.parametrize('sigma', [0.005, 0.03, 0.1, 0.3, 0.5, 1.5])
def test_wrapped_normal_score_is_the_gradient_of_its_log_density(sigma):
    x = torch.tensor([-0.7, -0.49, -0.1, 0.0, 0.004, 0.2, 0.45, 0.5, 0.93, 2.3], dtype=torch.float64)
    h = 1e-6 * min(sigma, 1.0)
    numerical = (wrapped_normal_logpdf(x + h, sigma) - wrapped_normal_logpdf(x - h, sigma)) / (2 * h)
    assert torch.allclose(wrapped_normal_score(x, sigma), numerical, atol=1e-6 * (1 + numerical.abs().max().item()), rtol=0)
    xg = x.clone().requires_grad_()
    wrapped_normal_logpdf(xg, sigma).sum().backward()
    assert torch.allclose(wrapped_normal_score(x, sigma), xg.grad, atol=1e-8 * (1 + xg.grad.abs().max().item()))


def test_wrapped_normal_density_and_score_norm():
    x = torch.linspace(0, 1, 2001, dtype=torch.float64)[:-1]
    for sigma in (0.01, 0.2, 0.5, 2.0):
        assert abs(wrapped_normal_logpdf(x - 0.3, sigma).exp().mean().item() - 1) < 1e-6
    for sigma in (0.005, 0.02):
        assert abs(wrapped_score_norm([sigma]).item() * sigma ** 2 - 1) < 1e-3
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.4
    mc = wrapped_normal_score(z, 0.4).pow(2).mean().item()
    assert abs(mc - wrapped_score_norm([0.4]).item()) < 0.02 * mc


# --- the denoiser's symmetries ---

@pytest.mark.parametrize('seed', [0, 1])
def test_cspnet_equivariance(toy, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = CSPNet(hidden=24, n_layers=2, n_freq=5, time_dim=16)
    b = collate_crystals([toy[i] for i in (0, 50, 300, 350)])
    types_t = atom_types_to_onehot(b.atom_types) + 0.3 * torch.randn(len(b.atom_types), 100, generator=g)
    frac_t = wrap_frac(b.frac_coords + 0.2 * torch.randn(b.frac_coords.shape, generator=g))
    lattice_t = b.lattice / 4 + 0.5 * torch.randn(b.lattice.shape, generator=g)
    errors = equivariance_errors(net, types_t, frac_t, lattice_t, b.num_atoms, torch.tensor([0, 3, 500, 999]), g)
    assert all(v < 1e-4 for v in errors.values()), errors


# --- training ---

@pytest.mark.parametrize('task', ['csp', 'dng'])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(models, toy, task):
    model = CrystalDiffusion(models[task].config).set_data_stats(toy)
    model.load_state_dict(models[task].state_dict())
    batch = toy.batch(range(0, 400, 10))
    gen = torch.Generator()
    def fixed_loss(m, b): gen.manual_seed(0); return m.loss(b, generator=gen)
    before, after = loss_drops_on_batch(model, fixed_loss, batch, steps=1, lr=1e-3)
    assert after < before


def test_checkpoint_and_resume(toy, tmp_path):
    small = toy.subset(range(0, len(toy), 4))
    cfg = config_for_data(small, **TINY, epochs=3, batch_size=32)
    learn = crystal_diffusion_learner(cfg, small, device='cpu')
    learn.fit(1, progress=False)
    path = save_training_state(learn, tmp_path / 'state.pt', elapsed=1.5)
    resumed, extra = resume_training(path, small, device='cpu')
    assert resumed.epoch == 1 and extra['elapsed'] == 1.5 and resumed.config == cfg
    for p, q in zip(resumed.model.parameters(), learn.model.parameters()): assert torch.equal(p, q)
    resumed.fit(2, progress=False)
    assert [h['epoch'] for h in resumed.history] == [1, 2, 3]
    model = load_crystal_diffusion(path)
    assert model.config == cfg and torch.equal(model.num_atoms_counts, learn.model.num_atoms_counts)


# --- sampling ---

def test_sampling_is_reproducible_with_a_seed(models):
    for kwargs, model in [(dict(compositions=['NaCl', 'SrTiO3']), models['csp']), (dict(n=3), models['dng'])]:
        a = sample_crystals(model, steps=6, generator=torch.Generator().manual_seed(3), **kwargs)
        b = sample_crystals(model, steps=6, generator=torch.Generator().manual_seed(3), **kwargs)
        for x, y in zip(a, b):
            assert torch.equal(x.lattice, y.lattice) and torch.equal(x.frac_coords, y.frac_coords) and torch.equal(x.atom_types, y.atom_types)


def test_csp_samples_keep_the_given_atom_types(models, toy):
    comps = [toy[5], toy[310], 'BaTiO3', [11, 17]]
    out = sample_crystals(models['csp'], compositions=comps, steps=5, generator=torch.Generator().manual_seed(0))
    expected = [toy[5].atom_types, toy[310].atom_types, torch.tensor([56, 22, 8, 8, 8]), torch.tensor([11, 17])]
    for c, e in zip(out, expected): assert torch.equal(c.atom_types, e)


def test_dng_samples_use_the_training_cell_sizes_and_elements(models, toy):
    out = sample_crystals(models['dng'], n=6, steps=5, generator=torch.Generator().manual_seed(0))
    sizes, elements = set(toy.num_atoms.tolist()), set(toy.atom_types.tolist())
    for c in out:
        assert c.num_atoms in sizes and set(c.atom_types.tolist()) <= elements


def test_charge_balance(models, toy):
    from crystal_tutorial.evaluation import composition_validity
    assert balanced_counts((11, 17), 4).tolist() == [[2, 2]]                   # Na2Cl2 is the only balanced share of 4 atoms
    assert balanced_counts((2, 10), 4).shape == (0, 2)                         # He and Ne never balance
    scores = torch.zeros(4, 100)
    scores[:, 10] = torch.tensor([3., 2., 1., 0.])                              # all prefer Na (column 10) ...
    scores[:, 16] = 0.5                                                         # ... atom 3 least: Na3Cl -> Na2Cl2 moves atom 2
    batch = torch.zeros(4, dtype=torch.long)
    assert balance_types(scores, batch, scores.argmax(-1)).tolist() == [10, 10, 16, 16]
    noble = torch.tensor([1, 1, 1, 9])                                          # He3Ne: no balanced option, left as it is
    assert balance_types(torch.randn(4, 100), batch, noble).tolist() == noble.tolist()
    na_cl = [11, 17] if {11, 17} <= set(toy.atom_types.tolist()) else toy[0].atom_types.unique().tolist()
    out = sample_crystals(models['dng'], num_atoms=[4] * 6, steps=5, generator=torch.Generator().manual_seed(0),
                          constraints=[AllowedElements(na_cl), RequiredElements(na_cl), ChargeBalance()])
    assert all(set(c.atom_types.tolist()) == set(na_cl) for c in out)
    if balanced_counts(tuple(sorted(na_cl)), 4).size:
        assert all(composition_validity(c.to_structure()) for c in out)


def test_sampling_on_the_available_device(models):
    device = get_device()
    model = models['csp'].to(device)
    try:
        out = sample_crystals(model, compositions=['NaCl'], steps=3, generator=torch.Generator().manual_seed(0))
        assert out[0].lattice.device.type == 'cpu' and torch.isfinite(out[0].frac_coords).all()
    finally:
        models['csp'].to('cpu')


def test_guidance_hook(toy):
    model = CrystalDiffusion(config_for_data(toy, **TINY, cond_dim=4)).set_data_stats(toy)
    cond = torch.randn(2, 4)
    assert torch.isfinite(model.loss(toy.batch([0, 1]), cond=cond)['loss'])
    kw = dict(compositions=['NaCl', 'KBr'], steps=4)
    base = sample_crystals(model, generator=torch.Generator().manual_seed(0), **kw)
    w0 = sample_crystals(model, cond=cond, guidance_scale=0.0, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.allclose(base[0].lattice, w0[0].lattice)


# --- shipped weights ---

@pytest.mark.parametrize('name', list(SHIPPED_MODELS))
def test_shipped_checkpoint_loads_and_samples_on_cpu(name):
    if not (WEIGHTS_DIR / SHIPPED_MODELS[name][0]).exists():
        with pytest.raises(FileNotFoundError, match='not shipped in this version'):
            load_crystal_diffusion(name)
        pytest.skip(f'{name} weights are not shipped yet')
    model = load_crystal_diffusion(name, device='cpu')
    kwargs = dict(compositions=['SrTiO3', 'NaCl']) if model.task == 'csp' else dict(n=2)
    out = sample_crystals(model, steps=10, generator=torch.Generator().manual_seed(0), **kwargs)
    assert len(out) == 2 and all(c is None or torch.isfinite(c.lattice).all() for c in out)
    size = (WEIGHTS_DIR / SHIPPED_MODELS[name][0]).stat().st_size
    assert size < 20 * 2**20, f'{name} is {size / 2**20:.1f} MB; keep shipped weights under 20 MB'


def test_shipped_measures_are_well_formed():
    "The measures recorded with the shipped weights (notebook 13 reads them): each names a shipped model, its weights and the command."
    import json
    entries = json.loads(MEASURES_FILE.read_text())
    assert entries, 'no measure recorded'
    for e in entries:
        assert e['model'] in SHIPPED_MODELS and len(e['weights_sha256']) == 64
        assert e['command'].startswith('python benchmarks/eval_crystal_diffusion.py ' + e['model'])
        assert isinstance(e['figures']['n'], int) and e['figures']['n'] > 0
        rates = {k: v for k, v in e['figures'].items() if 'rate' in k or 'validity' in k or k in ('uniqueness', 'novelty')}
        assert rates and all(0 <= v <= 1 for v in rates.values()), e
    # at least one shipped model is measured with the weights it ships now
    assert any(shipped_measures(name) for name in SHIPPED_MODELS if (WEIGHTS_DIR / SHIPPED_MODELS[name][0]).exists())


def test_recording_a_measure_keeps_a_damaged_file(tmp_path):
    weights, measures = tmp_path / 'w.pt', tmp_path / 'measures.json'
    weights.write_bytes(b'weights')
    measures.write_text('not json')
    with pytest.raises(ValueError, match='is not valid JSON'):
        record_measure('perov5_csp', {'n': 1, 'match_rate@1': 0.5}, 'python ...', measures, weights)
    assert measures.read_text() == 'not json' and not list(tmp_path.glob('*.tmp'))


def test_eval_script_records_shipped_models_only(tmp_path):
    script = ROOT / 'benchmarks' / 'eval_crystal_diffusion.py'
    run = subprocess.run([sys.executable, str(script), str(tmp_path / 'mine.pt'), '--record'], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and not run.stdout
    assert run.stderr.strip().splitlines()[-1].endswith("drop --record or use --json") and 'Traceback' not in run.stderr


# --- bad arguments ---

@pytest.mark.parametrize('kwargs, message', [
    (dict(compositions=['']), 'at least one atom'),
    (dict(compositions=[[]]), 'at least one atom'),
    (dict(compositions=['Na30Cl30']), 'more than this model supports'),
    (dict(compositions=['XxO2']), "unknown element 'Xx'"),
    (dict(compositions=[[8, 150]]), 'unknown element: atomic number 150'),
    (dict(compositions=['Ca(OH)2']), 'cannot read the formula'),
    (dict(n=3), 'needs compositions'),
    (dict(compositions=['NaCl'], steps=0), 'steps must be an integer from 1 to the 20'),
    (dict(compositions=['NaCl'], step_lr=-1.0), 'step_lr must be 0'),
    (dict(compositions=['NaCl'], cond=torch.zeros(1, 3)), 'this model is unconditional'),
])
def test_bad_csp_arguments(models, kwargs, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        sample_crystals(models['csp'], **kwargs)


@pytest.mark.parametrize('kwargs, message', [
    (dict(n=0), 'positive integer'),
    (dict(num_atoms=[4, 0]), 'at least one atom'),
    (dict(num_atoms=[99]), 'more than this model supports'),
    (dict(compositions=['NaCl']), 'generates the atom types itself'),
    (dict(n=2, num_atoms=[3]), 'give one or the other'),
])
def test_bad_dng_arguments(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_crystals(models['dng'], **kwargs)


def test_bad_configuration_and_names():
    with pytest.raises(ValueError, match="task must be 'csp'"): CrystalDiffusionConfig(task='both')
    with pytest.raises(ValueError, match='unknown configuration keys'): CrystalDiffusionConfig.from_dict({'layers': 3})
    with pytest.raises(ValueError, match='neither a shipped crystal diffusion model'): load_crystal_diffusion('no_such_model')
    with pytest.raises(ValueError, match='unknown element'): formula_to_atom_types('Qq2')


# --- the training script ---

def test_training_script_runs_and_resumes(tmp_path):
    script = ROOT / 'scripts' / 'train_crystal_diffusion.py'
    out = tmp_path / 'model.pt'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    base = [sys.executable, str(script), '--dataset', 'toy', '--limit', '120', '--task', 'dng', '--hidden', '16', '--n-layers', '1',
            '--n-steps', '20', '--batch-size', '64', '--out', str(out)]
    first = subprocess.run(base + ['--epochs', '1'], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run(base + ['--epochs', '2'], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'resuming from' in second.stdout
    state = torch.load(out, weights_only=True)
    assert state['epochs_done'] == 2 and state['complete'] and len(state['history']) == 2
    assert {'config', 'history', 'train_seconds', 'hardware', 'data', 'command'} <= set(state)
    model = load_crystal_diffusion(out)
    assert model.task == 'dng' and len(sample_crystals(model, n=2, steps=3)) == 2
    tuned = tmp_path / 'tuned.pt'                                  # fine-tuning: the weights and network of `out`, a new schedule
    ft = subprocess.run([sys.executable, str(script), '--dataset', 'toy', '--limit', '120', '--task', 'dng', '--init-from', str(out),
                         '--epochs', '1', '--lr', '3e-4', '--out', str(tuned)], capture_output=True, text=True, env=env, timeout=300)
    assert ft.returncode == 0, ft.stderr[-3000:]
    new = torch.load(tuned, weights_only=True)
    assert new['config']['hidden'] == 16 and new['config']['lr'] == 3e-4 and new['epochs_done'] == 1
    assert new['data']['earlier']['epochs_done'] == 2 and new['train_seconds'] > state['train_seconds']
    assert any((new['model'][k] - v).abs().max() > 0 for k, v in state['model'].items())           # it trained on from there
    assert max((new['model'][k] - v).abs().max() for k, v in state['model'].items()) < 0.1
