"""Property adapters (notebook 18): zero adapters leave the pretrained model unchanged, training moves only the
adapters, the shipped adapters load and sample reproducibly, damaged or mismatched files are one-line errors, and
the training script runs end to end."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crystal_tutorial.adapters import (SHIPPED_ADAPTERS, adapter_loss, add_adapters, load_adapted, load_judge,
                                       predict_property, property_condition, sample_with_property,
                                       save_adapters)
from crystal_tutorial.core import WEIGHTS_DIR, CheckpointError, save_checkpoint
from crystal_tutorial.learner import loss_drops_on_batch
from crystal_tutorial.crystal_diffusion import load_crystal_diffusion
from crystal_tutorial.crystals import toy_dataset
from crystal_tutorial.crystal_data import datasets_root

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def toy():
    ds = toy_dataset()
    ds.props['band_gap'] = torch.linspace(0, 4, len(ds), dtype=torch.float64)
    return ds


def adapted():
    return add_adapters(load_crystal_diffusion('mp_mix_20_dng'), 'band_gap', 0.0, 6.0)


def inputs(toy, n=6):
    b, g = toy.batch(list(range(n))), torch.Generator().manual_seed(0)
    return (torch.randn(len(b.atom_types), 100, generator=g), b.frac_coords, torch.randn(n, 3, 3, generator=g),
            b.num_atoms, b.batch, torch.full((n,), 300))


@torch.no_grad()
def test_zero_adapters_leave_the_pretrained_output_unchanged(toy):
    base, model = load_crystal_diffusion('mp_mix_20_dng'), adapted()
    x = inputs(toy)
    ref = base.net(*x)
    for cond in (property_condition(torch.linspace(0, 5, 6)), property_condition([float('nan')] * 6), None):
        out = model.net(*x, cond=cond)
        assert all(torch.equal(out[k], ref[k]) for k in ref)


def test_training_lowers_the_loss_and_moves_only_the_adapters(toy):
    torch.manual_seed(0)
    model = adapted()
    frozen = {k: v.clone() for k, v in model.net.base.state_dict().items()}
    batch = (toy.batch(list(range(16))),)
    before, after = loss_drops_on_batch(model, adapter_loss, batch, steps=8)
    assert after < before
    assert all(torch.equal(v, frozen[k]) for k, v in model.net.base.state_dict().items())
    assert any(m.weight.abs().sum() > 0 for m in model.net.adapters.mixins)


def test_shipped_adapters_sample_reproducibly_and_the_condition_matters():
    model = load_adapted('mp_mix_20_dng_band_gap', device='cpu')
    draw = lambda y, w=1.0: sample_with_property(model, y, 2, guidance_scale=w, steps=8, step_lr=0,
                                                 generator=torch.Generator().manual_seed(3))
    a, b, c = draw(0.0), draw(0.0), draw(4.0, 2.0)
    assert all(torch.equal(x.frac_coords, y.frac_coords) and torch.equal(x.atom_types, y.atom_types)
               for x, y in zip(a, b))
    assert not all(torch.equal(x.lattice, y.lattice) for x, y in zip(a, c))
    gaps = predict_property(load_judge('mp_mix_20_dng_band_gap'), a + [None])
    assert gaps[:2].min() >= 0 and gaps[-1] != gaps[-1]          # a band gap for each crystal, NaN for None


@pytest.mark.parametrize('value', [float('nan'), float('inf'), '2 eV', None, True])
def test_an_asked_value_that_is_not_a_finite_number_is_a_one_line_error(value):
    with pytest.raises(ValueError, match='finite number') as e:
        sample_with_property(adapted(), value, 1, steps=2)
    assert '\n' not in str(e.value)


def test_a_damaged_adapters_file_is_a_one_line_error(tmp_path, toy):
    f = save_adapters(tmp_path / 'a.pt', adapted(), 'mp_mix_20_dng')
    f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(CheckpointError) as e: load_adapted(f)
    assert '\n' not in str(e.value) and 'corrupt' in str(e.value)


def test_adapters_of_other_base_weights_or_no_adapters_are_refused(tmp_path):
    model = adapted()
    f = save_adapters(tmp_path / 'a.pt', model, 'mp_mix_20_dng')
    state = torch.load(f, weights_only=True)
    state['base_sha256'] = '0' * 64
    torch.save(state, tmp_path / 'b.pt')
    with pytest.raises(CheckpointError, match='other weights'): load_adapted(tmp_path / 'b.pt')
    save_checkpoint(tmp_path / 'c.pt', model, config={'task': 'dng'})
    with pytest.raises(CheckpointError, match='holds no adapters'): load_adapted(tmp_path / 'c.pt')
    with pytest.raises(CheckpointError, match='holds no regressor'): load_judge(f)
    with pytest.raises(ValueError, match='already takes a condition'): add_adapters(model, 'band_gap', 0, 6)


def test_shipped_file_is_small_and_has_its_card():
    f = WEIGHTS_DIR / SHIPPED_ADAPTERS['mp_mix_20_dng_band_gap']
    assert f.stat().st_size < 20 * 2**20
    assert f.with_suffix('.md').exists()


def train(tmp_path, *options):
    return subprocess.run([sys.executable, str(ROOT / 'scripts' / 'train_property_adapters.py'), '--epochs', '1',
                           '--threads', '1', '--out', str(tmp_path / 'a.pt'), *options],
                          capture_output=True, text=True, timeout=600)


def test_training_script_refuses_a_missing_property(tmp_path):
    r = train(tmp_path, '--dataset', 'toy')                        # the toy crystals have no band gaps
    assert r.returncode == 2 and 'no property' in r.stderr.splitlines()[-1]
    assert not (tmp_path / 'a.pt').exists()


@pytest.mark.skipif(datasets_root() is None or not (datasets_root() / 'mp_mix_20').exists(),
                    reason='needs the mp_mix_20 dataset')
def test_training_script_writes_loadable_adapters(tmp_path):
    r = train(tmp_path, '--dataset', 'mp_mix_20', '--limit', '120')
    assert r.returncode == 0, r.stderr[-500:]
    model, judge = load_adapted(tmp_path / 'a.pt'), load_judge(tmp_path / 'a.pt')
    assert model.config.cond_dim == 2 and judge is not None
    assert torch.load(tmp_path / 'a.pt', weights_only=True)['epochs_done'] == 1
