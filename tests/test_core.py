"""What the notebooks cannot show: the device helper on a CPU-only machine, checkpoint round trips, and bad files."""
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import crystal_tutorial.core as core
from crystal_tutorial.core import CheckpointError, get_device, load_checkpoint, run_mode, save_checkpoint
from crystal_tutorial.learner import Learner


def tiny_learner(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    dl = DataLoader(TensorDataset(x, y), batch_size=16)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    loss = lambda m, b: nn.functional.mse_loss(m(b[0]), b[1])
    return Learner(model, dl, dl, loss, lr=1e-2, device='cpu'), x


def test_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.delenv(core.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(core, '_mps_available', lambda: False)
    assert get_device() == torch.device('cpu')
    with pytest.raises(ValueError, match='no CUDA GPU'):
        get_device('cuda')
    with pytest.raises(ValueError, match='MPS is not available'):
        get_device('mps')


def test_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv(core.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(core, '_mps_available', lambda: True)
    assert get_device().type == 'mps'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert get_device().type == 'cuda'


def test_device_environment_override(monkeypatch):
    monkeypatch.setenv(core.DEVICE_ENV, 'cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert get_device() == torch.device('cpu')
    monkeypatch.setenv(core.DEVICE_ENV, 'gpu please')
    with pytest.raises(ValueError, match='unknown device'):
        get_device()


def test_mode_defaults_to_fast_under_pytest(monkeypatch):
    monkeypatch.delenv(core.MODE_ENV, raising=False)
    assert run_mode() == 'fast'
    monkeypatch.setenv(core.MODE_ENV, 'full')
    assert run_mode() == 'full'
    monkeypatch.setenv(core.MODE_ENV, 'fastest')
    with pytest.raises(ValueError, match="'fast' or 'full'"):
        run_mode()


def test_checkpoint_round_trip_resumes_training(tmp_path):
    learn, x = tiny_learner()
    learn.fit(3, progress=False)
    path = learn.save(tmp_path / 'sub' / 'model.pt', config={'hidden': 8})
    resumed, _ = tiny_learner(seed=1)
    state = resumed.load(path)
    assert state['config'] == {'hidden': 8}
    assert resumed.epoch == 3 and len(resumed.history) == 3
    with torch.no_grad():
        torch.testing.assert_close(resumed.model(x), learn.model(x))
    for a, b in zip(resumed.model.state_dict().values(), learn.model.state_dict().values()):
        assert torch.equal(a, b)
    resumed.fit(1, progress=False)
    assert resumed.epoch == 4


def test_missing_checkpoint_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist') as err:
        load_checkpoint(tmp_path / 'nope.pt')
    assert 'nope.pt' in str(err.value)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', os.urandom(4096)], ids=['empty', 'text', 'random'])
def test_corrupt_checkpoint_gives_one_line_error(tmp_path, content):
    path = tmp_path / 'bad.pt'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match='corrupt') as err:
        load_checkpoint(path)
    assert '\n' not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__   # no chained traceback
    assert path.read_bytes() == content                                      # the file is left as it was


def test_truncated_checkpoint(tmp_path):
    learn, _ = tiny_learner()
    path = learn.save(tmp_path / 'model.pt')
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match='corrupt'):
        load_checkpoint(path, learn.model)


class Payload:
    "An arbitrary object: a weights_only load must refuse to unpickle it."


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / 'evil.pt'
    torch.save({'format': 1, 'payload': Payload()}, path)
    with pytest.raises(CheckpointError, match='corrupt or not a PyTorch checkpoint'):
        load_checkpoint(path)


def test_checkpoint_for_another_model(tmp_path):
    learn, _ = tiny_learner()
    path = learn.save(tmp_path / 'model.pt')
    with pytest.raises(CheckpointError, match='different model'):
        load_checkpoint(path, nn.Linear(3, 1))


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    learn, _ = tiny_learner()
    path = save_checkpoint(tmp_path / 'model.pt', learn.model, note='first')
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(path, learn.model, note=lambda: 'cannot be pickled')
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['model.pt']
    assert load_checkpoint(path)['note'] == 'first'
