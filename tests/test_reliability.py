"""What a careless or unlucky user can do to the command line and the loaders: each case must end in one line on
stderr with exit code 2 (or the project's own exception with one line), no traceback, and no file written or harmed."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from crystal_tutorial.core import (WEIGHTS_DIR, CheckpointError, InputError, check_seed, get_device, load_checkpoint,
                                   save_checkpoint, to_json, verify_shipped, weights_manifest, write_weights_manifest)
from crystal_tutorial.crystal_diffusion import CrystalDiffusion, CrystalDiffusionConfig, load_crystal_diffusion

CLI = [sys.executable, '-c', 'import sys; from crystal_tutorial.cli import main; sys.exit(main())']
NO_GPU = not torch.cuda.is_available()


def run(argv, cwd, env=None, timeout=120):
    return subprocess.run(CLI + argv, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(r, message):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert message in lines[0], lines[0]


# Each case is refused before the model is loaded or anything is sampled: (arguments, environment, message).
GENERATE_CASES = [
    (['Ti O S', '--device', 'bogus'], {}, "unknown device 'bogus'"),
    (['Ti O S'], {'CRYSTAL_TUTORIAL_DEVICE': 'bogus'}, 'from $CRYSTAL_TUTORIAL_DEVICE'),
    (['Ti O S', '--seed', '-1', '--symmetry', 'cubic'], {}, 'seed must be'),
    (['Ti O S', '--seed', str(2**64)], {}, 'seed must be'),
    (['Ti O S', '--n-samples', '100000'], {}, 'from 1 to 1000'),
    (['Ti O S', '--n-samples', '0'], {}, '--n-samples'),
    (['Ti O S', '--steps', '0'], {}, '--steps'),
    (['Ti O S', '--step-lr', 'nan'], {}, '--step-lr'),
    (['Ti O S'], {'CRYSTAL_TUTORIAL_THREADS': 'many'}, 'CRYSTAL_TUTORIAL_THREADS'),
] + ([(['Ti O S', '--device', 'cuda'], {}, 'no CUDA GPU')] if NO_GPU else [])

# Refused once the model has read the prompt (a few seconds), still before sampling.
PROMPT_CASES = [
    (['Ti O s'], "did you mean 'S'"),
    (['\u0422i O S'], 'non-Latin letter'),                      # a Cyrillic capital Te
    (['Ti O S', '--guidance-scale', '1e30'], 'guidance_scale must be'),
    (['Ti O S', '--guidance-scale', 'nan'], 'guidance_scale must be'),
    (['Ti O S', '--n-atoms', '41'], 'out of range'),
]

EVALUATE_CASES = [
    (['--fmax', 'nan'], '--fmax'),
    (['--fmax', '-1'], '--fmax'),
    (['--relax', '-1'], '--relax'),
    (['--device', 'bogus'], "unknown device 'bogus'"),
] + ([(['--device', 'cuda', '--relax', '5'], 'no CUDA GPU')] if NO_GPU else [])


@pytest.mark.parametrize('argv, env, message', GENERATE_CASES)
def test_generate_refuses_before_loading(tmp_path, argv, env, message):
    t0 = time.time()
    r = run(['generate', *argv, '--out', str(tmp_path / 'out')], tmp_path, env)
    assert_one_line_error(r, message)
    assert not (tmp_path / 'out').exists() and sorted(os.listdir(tmp_path)) == []
    assert time.time() - t0 < 60


@pytest.mark.parametrize('argv, message', PROMPT_CASES)
def test_generate_refuses_bad_prompts(tmp_path, argv, message):
    r = run(['generate', *argv, '--out', str(tmp_path / 'out')], tmp_path)
    assert_one_line_error(r, message)
    assert sorted(os.listdir(tmp_path)) == []


@pytest.fixture
def samples(tmp_path):
    from crystal_tutorial.crystals import toy_dataset
    folder = tmp_path / 'samples'
    folder.mkdir()
    (folder / 'a.cif').write_text(toy_dataset()[0].to_cif())
    (tmp_path / 'train.csv').write_text('material_id,cif\n')
    return folder


@pytest.mark.parametrize('argv, message', EVALUATE_CASES)
def test_evaluate_refuses_before_the_slow_part(samples, argv, message):
    tmp = samples.parent
    r = run(['evaluate', str(samples), '--reference', str(tmp / 'train.csv'), *argv], tmp)
    assert_one_line_error(r, message)
    assert sorted(os.listdir(tmp)) == ['samples', 'train.csv']


def test_evaluate_skips_a_huge_cif_unread(samples):
    (samples / 'huge.cif').write_bytes(b'data_x\n' + b'# padding\n' * 200_000)        # 2 MB
    from crystal_tutorial.evaluation import load_structures
    t0 = time.time()
    names, structures, errors = load_structures(samples)
    assert time.time() - t0 < 5
    assert structures[names.index('huge.cif')] is None and 'limit' in errors[names.index('huge.cif')]
    assert structures[names.index('a.cif')] is not None


def test_output_folder_is_a_file(tmp_path):
    (tmp_path / 'taken').write_text('mine\n')
    r = run(['generate', 'Ti O S', '--n-atoms', '4', '--steps', '2', '--out', str(tmp_path / 'taken')], tmp_path)
    assert_one_line_error(r, 'is a file')
    assert (tmp_path / 'taken').read_text() == 'mine\n'


def _wait_for(path, proc, seconds=120):
    for _ in range(seconds * 10):
        if path.exists() or proc.poll() is not None: return path.exists()
        time.sleep(0.1)
    return False


def test_two_runs_into_one_folder(tmp_path):
    "The second run is refused at once; the first one's files are complete and its own."
    argv = ['generate', 'Ti O S', '--n-atoms', '6', '--n-samples', '2', '--steps', '300', '--seed', '0', '--device', 'cpu',
            '--quiet', '--out', str(tmp_path / 'gen')]
    first = subprocess.Popen(CLI + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert _wait_for(tmp_path / '.gen.lock', first)
    os.kill(first.pid, signal.SIGSTOP)              # paused while it holds the folder: it cannot finish first
    try:
        second = run(argv[:-1] + [str(tmp_path / 'gen')], tmp_path)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert_one_line_error(second, 'being written by another run')
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    summary = json.loads((tmp_path / 'gen' / 'summary.json').read_text())
    assert summary['seed'] == 0 and len(summary['files']) == 2
    assert sorted(os.listdir(tmp_path)) == ['gen']                     # no lock, no temporary folder left


def test_killed_run_leaves_nothing_and_the_next_run_cleans_up(tmp_path):
    argv = ['generate', 'Ti O S', '--n-atoms', '6', '--n-samples', '2', '--steps', '400', '--device', 'cpu', '--quiet',
            '--out', str(tmp_path / 'gen')]
    proc = subprocess.Popen(CLI + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    assert _wait_for(tmp_path / '.gen.lock', proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert not (tmp_path / 'gen').exists()                            # nothing half-written is visible
    r = run(argv[:6] + ['--steps', '2', '--device', 'cpu', '--quiet', '--out', str(tmp_path / 'gen')], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ['gen']                     # the killed run's temporary folder is gone


def test_files_follow_the_umask(tmp_path):
    r = subprocess.run(['bash', '-c', 'umask 027 && exec "$@"', '_', *CLI, 'generate', 'Ti O', '--n-atoms', '2',
                        '--n-samples', '1', '--steps', '2', '--quiet', '--out', str(tmp_path / 'gen')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'gen').stat().st_mode & 0o777 == 0o750
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / 'gen').iterdir()} == {0o640}


# --- the library: one exception class per kind of problem, each with a one-line message ---------------------------

def test_devices_and_seeds():
    with pytest.raises(InputError, match='unknown device'): get_device('bogus')
    with pytest.raises(InputError, match='not supported'): get_device('meta')
    for bad in (-1, 2**63, 1.5, True, '3'):
        with pytest.raises(InputError, match='seed must be'): check_seed(bad)
    assert check_seed(2**63 - 1) == 2**63 - 1 and check_seed(None) is None


def test_json_is_strict():
    text = to_json({'a': float('nan'), 'b': [float('inf'), 1.5], 'c': torch.tensor(2.0).item()})
    assert json.loads(text) == {'a': None, 'b': [None, 1.5], 'c': 2.0} and 'NaN' not in text


@pytest.fixture
def diffusion_ckpt(tmp_path):
    config = CrystalDiffusionConfig(hidden=16, n_layers=1, n_steps=10)
    return save_checkpoint(tmp_path / 'model.pt', CrystalDiffusion(config), config=config.__dict__.copy())


def _rewrite(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    return path


def _reshape(state):
    name = next(k for k, v in state['model'].items() if v.ndim == 2)
    state['model'][name] = state['model'][name][:, :-1]


def _nan(state):
    name = next(iter(state['model']))
    state['model'][name] = torch.full_like(state['model'][name], float('nan'))


@pytest.mark.parametrize('change, message', [
    (_reshape, 'different model'),
    (lambda s: s['config'].update(hidden='wide'), 'not a valid CrystalDiffusion configuration'),
    (lambda s: s['config'].update(no_such_field=1), 'not a valid CrystalDiffusion configuration'),
    (lambda s: s.pop('config'), "no 'config' and 'model'"),
    (_nan, 'NaN or infinite weights'),
])
def test_damaged_checkpoints_are_one_line_errors(diffusion_ckpt, change, message):
    assert load_crystal_diffusion(diffusion_ckpt) is not None
    _rewrite(diffusion_ckpt, change)
    with pytest.raises(CheckpointError, match=message) as e:
        load_crystal_diffusion(diffusion_ckpt)
    assert len(str(e.value).splitlines()) == 1


def test_truncated_checkpoint(diffusion_ckpt):
    data = diffusion_ckpt.read_bytes()
    diffusion_ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='corrupt'):
        load_crystal_diffusion(diffusion_ckpt)


def test_a_manifest_catches_overwritten_and_flipped_bytes(tmp_path):
    path = save_checkpoint(tmp_path / 'w.pt', nn.Linear(64, 64))
    write_weights_manifest(tmp_path)
    assert verify_shipped(path, tmp_path) == path
    data = bytearray(path.read_bytes())
    for damage in ('flip', 'overwrite'):
        broken = bytearray(data)
        if damage == 'flip': broken[len(broken) // 2] ^= 0x10
        else: broken[1000:5096] = bytes(4096)                           # 4 kB of weights overwritten
        path.write_bytes(bytes(broken))
        with pytest.raises(CheckpointError, match='does not match its SHA-256'):
            verify_shipped(path, tmp_path)


def test_every_shipped_file_is_in_the_manifest_and_matches():
    manifest = weights_manifest()
    shipped = sorted(p.name for p in WEIGHTS_DIR.iterdir() if p.name.endswith(('.pt', '.npz')) and not p.name.endswith('.last.pt'))
    assert shipped == sorted(manifest), 'run python scripts/update_weights_manifest.py'
    for name in shipped: verify_shipped(WEIGHTS_DIR / name)


def test_a_damaged_shipped_file_is_refused_on_load(tmp_path, monkeypatch):
    "A copy of the weights folder with one shipped checkpoint damaged: its loader refuses it with the restore hint."
    import crystal_tutorial.core as core
    name = 'crystal_diffusion_perov5_csp.pt'
    (tmp_path / name).write_bytes((WEIGHTS_DIR / name).read_bytes()[:-4096] + bytes(4096))
    (tmp_path / 'MANIFEST.json').write_text((WEIGHTS_DIR / 'MANIFEST.json').read_text())
    monkeypatch.setattr(core, 'WEIGHTS_DIR', tmp_path)
    with pytest.raises(CheckpointError, match='git checkout -- '):
        load_checkpoint(tmp_path / name)


def test_a_killed_writer_leaves_no_temporary_behind(tmp_path):
    stale = tmp_path / '.model.pt.k1ll3d.tmp'
    stale.write_bytes(b'')                                                  # what kill -9 during a save leaves
    save_checkpoint(tmp_path / 'model.pt', nn.Linear(2, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.pt']


def test_resume_falls_back_to_the_previous_state(tmp_path):
    from crystal_tutorial.learner import Learner
    x = torch.randn(64, 1)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 2 * x), batch_size=16, shuffle=True)
    mse = lambda m, b: nn.functional.mse_loss(m(b[0]), b[1])
    learn = Learner(nn.Linear(1, 1), dl, None, mse, device='cpu').fit(1, progress=False)
    learn.save(tmp_path / 'state.pt', keep_previous=True)
    learn.fit(1, progress=False).save(tmp_path / 'state.pt', keep_previous=True)
    (tmp_path / 'state.pt').write_bytes((tmp_path / 'state.pt').read_bytes()[:64])          # cut short
    again = Learner(nn.Linear(1, 1), dl, None, mse, device='cpu')
    with pytest.warns(UserWarning, match='previous state'):
        again.load(tmp_path / 'state.pt')
    assert again.epoch == 1
