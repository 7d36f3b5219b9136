"""Diffusion on MNIST: sampling on the available device, bad arguments, the shipped weights, checkpoint round trips."""
import math

import pytest
import torch

from crystal_tutorial.core import CheckpointError, get_device, load_checkpoint, save_checkpoint
from crystal_tutorial.diffusion import (MNIST_DIFFUSION, WEIGHTS_DIR, Diffusion, NoiseSchedule, UNet, cosine_betas,
                                        ddim_sample, ddpm_sample, guided_prediction, linear_betas, load_mnist_diffusion)


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    model = Diffusion(UNet(channels=(8, 16, 16), emb_dim=32), NoiseSchedule(cosine_betas(10)))
    with torch.no_grad():    # the output layer starts at zero; nudge every weight so that outputs depend on the inputs
        for p in model.parameters(): p.add_(0.05 * torch.randn_like(p))
    return model


def test_sampling_on_the_available_device(tiny):
    device = get_device()
    model = tiny.to(device)
    labels = torch.tensor([3, 7])
    for sample in (lambda: ddpm_sample(model, 2, labels=labels, guidance_scale=2.0, generator=torch.Generator().manual_seed(0)),
                   lambda: ddim_sample(model, 2, steps=5, labels=labels, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))):
        a, b = sample(), sample()
        assert a.device.type == device.type
        assert a.shape == (2, 1, 28, 28)
        assert torch.isfinite(a).all()
        assert torch.equal(a, b), 'the same seed must give the same samples'
    tiny.to('cpu')


@pytest.mark.parametrize('steps', [0, -1, 11, 2.5, '10'])
def test_bad_step_counts_are_refused(tiny, steps):
    with pytest.raises(ValueError, match='steps must be an integer from 1 to the 10 training steps'):
        ddim_sample(tiny, 1, steps=steps)


@pytest.mark.parametrize('scale', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_guidance_scale_is_refused(tiny, scale):
    with pytest.raises(ValueError, match='guidance_scale must be a finite number'):
        ddpm_sample(tiny, 1, labels=torch.tensor([1]), guidance_scale=scale)
    with pytest.raises(ValueError, match='guidance_scale must be a finite number'):
        ddim_sample(tiny, 1, steps=2, labels=torch.tensor([1]), guidance_scale=scale)


@pytest.mark.parametrize('n', [0, -3, 1.5])
def test_bad_sample_counts_are_refused(tiny, n):
    with pytest.raises(ValueError, match='positive integer'):
        ddpm_sample(tiny, n)


def test_guidance_zero_is_the_unconditional_model(tiny):
    x, t = torch.randn(3, 1, 28, 28), torch.full((3,), 4)
    y, null = torch.tensor([0, 1, 2]), torch.full((3,), 10)
    with torch.no_grad():
        predict = lambda cond: tiny.predict_eps(x, t, cond)
        assert torch.equal(guided_prediction(predict, y, null, 0), predict(null))
        assert predict(null).abs().max() > 0
        assert not torch.allclose(guided_prediction(predict, y, null, 2), predict(null))
        assert torch.allclose(guided_prediction(predict, y, null, 1), predict(y))


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match='at least 1'):
        cosine_betas(0)
    with pytest.raises(ValueError, match='between 0 and 1'):
        NoiseSchedule(torch.tensor([0.0, 0.5]))
    assert math.isclose(NoiseSchedule(linear_betas(1000)).betas[-1].item(), 0.02, rel_tol=1e-5)


def test_checkpoint_round_trip_keeps_weights_and_schedule(tiny, tmp_path):
    path = save_checkpoint(tmp_path / 'tiny.pt', tiny, config={'note': 'test'})
    other = Diffusion(UNet(channels=(8, 16, 16), emb_dim=32), NoiseSchedule(linear_betas(10)))
    state = load_checkpoint(path, other)
    assert state['config'] == {'note': 'test'}
    assert torch.equal(other.schedule.betas, tiny.schedule.betas)
    for a, b in zip(other.state_dict().values(), tiny.state_dict().values()): assert torch.equal(a, b)
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ddim_sample(other, 1, steps=3, x_T=x, clip=False), ddim_sample(tiny, 1, steps=3, x_T=x, clip=False), atol=1e-5)


def test_loading_a_corrupt_diffusion_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / 'broken.pt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='broken.pt'):
        load_mnist_diffusion(bad)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_mnist_diffusion(tmp_path / 'missing.pt')


@pytest.mark.skipif(not (WEIGHTS_DIR / MNIST_DIFFUSION).exists(), reason='shipped weights not built yet')
def test_shipped_weights_load_safely_and_sample():
    ckpt = torch.load(WEIGHTS_DIR / MNIST_DIFFUSION, map_location='cpu', weights_only=True)
    assert {'model', 'config', 'history', 'train_seconds', 'hardware', 'command'} <= set(ckpt)
    assert (WEIGHTS_DIR / MNIST_DIFFUSION).stat().st_size < 20 * 2**20
    model = load_mnist_diffusion(device='cpu')
    x = ddim_sample(model, 2, steps=5, labels=torch.tensor([0, 1]), guidance_scale=2.0,
                    generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
