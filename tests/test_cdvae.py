"""CDVAE (notebook 17): a training step lowers the loss, the number-of-atoms head beats chance, the shipped
model loads and samples reproducibly on the CPU, damaged checkpoints are one-line errors, and the training
script runs and resumes."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crystal_tutorial.cdvae import (SHIPPED_CDVAES, CDVAE, CDVAEConfig, cdvae_from_checkpoint, composition_types,
                                    load_cdvae, num_atoms_accuracy, reconstruct, sample)
from crystal_tutorial.core import WEIGHTS_DIR, CheckpointError, save_checkpoint
from crystal_tutorial.learner import loss_drops_on_batch
from crystal_tutorial.crystal_diffusion import config_for_data
from crystal_tutorial.crystals import toy_dataset
from crystal_tutorial.crystal_data import datasets_root, load_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(latent_dim=16, enc_hidden=32, enc_layers=2, n_gauss=16, hidden=32, n_layers=2, n_freq=4, time_dim=16,
            n_levels=10)
SHIPPED = WEIGHTS_DIR / SHIPPED_CDVAES['carbon24'][0]
HAVE_CARBON = datasets_root() is not None and (datasets_root() / 'carbon_24' / 'test.csv').exists()


@pytest.fixture(scope='module')
def toy():
    return toy_dataset()


def tiny_model(toy, seed=0):
    torch.manual_seed(seed)
    return CDVAE(config_for_data(toy, CDVAEConfig, **TINY)).set_data_stats(toy)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(toy):
    batch = toy.batch(torch.arange(32))
    fixed = lambda m, b: m.loss(b, generator=torch.Generator().manual_seed(0))
    before, after = loss_drops_on_batch(tiny_model(toy), fixed, batch, steps=1, lr=1e-4)
    assert after < before


def test_the_number_of_atoms_head_beats_chance_after_training(toy):
    "A few Adam steps on a fixed batch: the head's accuracy passes always answering the commonest size."
    model, batch = tiny_model(toy), toy.batch(torch.arange(0, len(toy), 3))
    acc0, chance = num_atoms_accuracy(model, batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(40):
        opt.zero_grad(); model.loss(batch, generator=torch.Generator().manual_seed(step))['loss'].backward()
        opt.step()
    acc, chance = num_atoms_accuracy(model, batch)
    assert acc > chance, (acc0, acc, chance)


def test_composition_counts_add_up_to_the_number_of_atoms():
    fractions = torch.softmax(torch.randn(20, 100, generator=torch.Generator().manual_seed(0)), -1)
    num_atoms = torch.randint(1, 25, (20,), generator=torch.Generator().manual_seed(1))
    assert len(composition_types(fractions, num_atoms)) == int(num_atoms.sum())


@pytest.mark.parametrize('n', [0, -2, 2.5, True])
def test_a_bad_number_of_samples_is_a_one_line_error(toy, n):
    with pytest.raises(ValueError, match='n must be a whole number') as e:
        sample(tiny_model(toy), n)
    assert '\n' not in str(e.value)


def test_sampling_and_reconstruction_with_a_seed_are_reproducible(toy):
    model = tiny_model(toy)
    a, b = (sample(model, 3, generator=torch.Generator().manual_seed(7), steps_per_level=2) for _ in range(2))
    assert all(torch.equal(x.frac_coords, y.frac_coords) and torch.equal(x.lattice, y.lattice) for x, y in zip(a, b))
    rec = reconstruct(model, toy.batch(torch.arange(2)), generator=torch.Generator().manual_seed(0),
                      steps_per_level=1)
    assert len(rec) == 2


@pytest.mark.skipif(not SHIPPED.exists(), reason='the Carbon-24 CDVAE is not shipped')
def test_shipped_cdvae_loads_and_samples_reproducibly_on_cpu():
    model = load_cdvae('carbon24', device='cpu')
    assert SHIPPED.stat().st_size < 20 * 2**20
    a, b = (sample(model, 3, generator=torch.Generator().manual_seed(0), steps_per_level=2) for _ in range(2))
    assert all(torch.equal(x.frac_coords, y.frac_coords) and torch.equal(x.lattice, y.lattice) for x, y in zip(a, b))
    assert all(6 <= c.num_atoms <= 24 and set(c.atom_types.tolist()) == {6} for c in a)


@pytest.mark.skipif(not (SHIPPED.exists() and HAVE_CARBON), reason='needs the shipped CDVAE and Carbon-24')
def test_shipped_number_of_atoms_head_beats_chance_on_test_crystals():
    test_ds = load_dataset('carbon_24', 'test', limit=200)
    acc, chance = num_atoms_accuracy(load_cdvae('carbon24', device='cpu'), test_ds.batch(torch.arange(200)))
    assert acc > chance + 0.2, (acc, chance)


def _reshape(state):
    name = next(k for k, v in state['model'].items() if v.ndim == 2)
    state['model'][name] = state['model'][name][:, :-1]


def _nan(state):
    name = next(k for k, v in state['model'].items() if v.is_floating_point())
    state['model'][name] = torch.full_like(state['model'][name], float('nan'))


@pytest.mark.parametrize('change, message', [
    (_reshape, 'different model'),
    (lambda s: s['config'].update(latent_dim='wide'), 'not a valid CDVAE configuration'),
    (lambda s: s['config'].update(no_such_field=1), 'not a valid CDVAE configuration'),
    (lambda s: s.pop('config'), "no 'config' and 'model'"),
    (_nan, 'NaN or infinite weights'),
    (None, 'corrupt'),
])
def test_a_damaged_checkpoint_is_a_one_line_error(toy, tmp_path, change, message):
    from dataclasses import asdict
    model, path = tiny_model(toy), tmp_path / 'cdvae.pt'
    save_checkpoint(path, model, model_class='CDVAE', config=asdict(model.config))
    assert isinstance(load_cdvae(path), CDVAE)
    if change is None: path.write_bytes(path.read_bytes()[:1000])                   # cut short
    else:
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)
    with pytest.raises(CheckpointError, match=message) as e:
        load_cdvae(path)
    assert len(str(e.value).splitlines()) == 1


def test_another_model_is_not_read_as_a_cdvae():
    with pytest.raises(ValueError, match='not a CDVAE'):
        cdvae_from_checkpoint({'model_class': 'CrystalFlow', 'config': {}, 'model': {}})


def test_training_script_runs_and_resumes(tmp_path):
    out = tmp_path / 'cdvae.pt'
    cmd = [sys.executable, str(ROOT / 'scripts/train_cdvae.py'), '--dataset', 'toy', '--limit', '40',
           '--latent-dim', '8', '--enc-hidden', '16', '--hidden', '16', '--n-layers', '1', '--time-dim', '16',
           '--batch-size', '20', '--threads', '1', '--out', str(out)]
    for epochs in ('1', '2'):
        r = subprocess.run(cmd + ['--epochs', epochs], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
    assert 'resuming' in r.stdout
    model = load_cdvae(out)
    assert isinstance(model, CDVAE) and model.config.epochs == 2 and model.config.latent_dim == 8
