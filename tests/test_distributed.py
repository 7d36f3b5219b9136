"""Data-parallel training with torch.distributed (gloo, two CPU processes started by torchrun): the same losses as one
process with the same global batch, one checkpoint written, resumed with another number of processes."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import json, sys, torch
    import torch.distributed as dist
    from torch import nn
    from crystal_tutorial.core import set_seed
    from crystal_tutorial.learner import Learner, init_distributed, rank, shard_loader, world_size
    epochs, state, resume, same_order = int(sys.argv[1]), sys.argv[2], sys.argv[3] == 'resume', sys.argv[4] == 'sharded'
    torch.set_num_threads(1)
    init_distributed()
    set_seed(0)
    x = torch.linspace(-3, 3, 256)[:, None]
    ds = torch.utils.data.TensorDataset(x, torch.sin(2 * x))
    dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    mse = lambda m, b: nn.functional.mse_loss(m(b[0]), b[1])
    learn = Learner(model, dl, None, mse, lr=1e-2, device='cpu')
    if same_order and world_size() == 1: learn.train_dl = shard_loader(dl, shuffle=True)   # one process, the shards' order
    learn.distribute()
    if resume: learn.load(state)
    seen = [int(i) for i in learn.train_dl.sampler] if hasattr(learn.train_dl.sampler, 'set_epoch') else []
    learn.fit(epochs - learn.epoch, progress=False)
    learn.save(state)
    everyone = [None] * world_size()
    if world_size() > 1: dist.all_gather_object(everyone, seen)
    else: everyone = [seen]
    if rank() == 0:
        print('RESULT', json.dumps({'world': world_size(), 'losses': [h['train_loss'] for h in learn.history],
                                    'weight': learn.model[0].weight.flatten().tolist(), 'seen': sorted(sum(everyone, [])),
                                    'batch': learn.train_dl.batch_size}))
''')


def run(tmp_path, n_proc, epochs, state, resume=False, same_order=True):
    script = tmp_path / 'train.py'
    script.write_text(SCRIPT)
    launch = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={n_proc}']
              if n_proc > 1 else [sys.executable])
    r = subprocess.run(launch + [str(script), str(epochs), str(state), 'resume' if resume else 'new',
                                 'sharded' if same_order else 'plain'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(l for l in r.stdout.splitlines() if l.startswith('RESULT'))
    return json.loads(line[len('RESULT'):])


@pytest.mark.skipif(not torch.distributed.is_available(), reason='this torch has no torch.distributed')
def test_two_processes_train_as_one(tmp_path):
    one = run(tmp_path, 1, 3, tmp_path / 'one.pt')                        # 3 epochs of 8 steps: 24 optimizer steps
    two = run(tmp_path, 2, 3, tmp_path / 'two.pt')
    assert two['world'] == 2 and two['batch'] == 16 and one['batch'] == 32    # the same global batch
    assert max(abs(a - b) for a, b in zip(one['losses'], two['losses'])) < 1e-4
    assert max(abs(a - b) for a, b in zip(one['weight'], two['weight'])) < 1e-4
    assert two['seen'] == list(range(256))                                # every crystal once per epoch, over both
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one.pt', 'train.py', 'two.pt']   # one file, written once
    # resumed by a single process, for two more epochs, it carries on from the two-process state
    more = run(tmp_path, 1, 5, tmp_path / 'two.pt', resume=True)
    assert more['world'] == 1 and len(more['losses']) == 5 and more['losses'][:3] == two['losses']
    assert more['losses'][-1] < more['losses'][0]


def test_one_process_is_unchanged_by_distribute(tmp_path):
    plain = run(tmp_path, 1, 1, tmp_path / 'plain.pt', same_order=False)
    assert plain['world'] == 1 and plain['batch'] == 32 and plain['seen'] == []   # the DataLoader as given


def test_mixed_precision_runs_and_keeps_float32_weights():
    from torch import nn
    from crystal_tutorial.learner import Learner
    x = torch.randn(32, 4)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    learn = Learner(nn.Linear(4, 1), dl, None, lambda m, b: nn.functional.mse_loss(m(b[0]).float(), b[1]), device='cpu')
    learn.amp = True
    before = learn.evaluate(dl)['loss']
    learn.fit(3, progress=False)
    assert learn.model.weight.dtype == torch.float32 and learn.history[-1]['train_loss'] < before


MEASURE = textwrap.dedent('''
    import json, torch
    from crystal_tutorial.crystals import toy_dataset
    from crystal_tutorial.evaluation import dng_metrics
    from crystal_tutorial.learner import init_distributed, rank, shard_map, world_size
    torch.set_num_threads(1)
    init_distributed()
    toy = toy_dataset()
    generated = [toy[i] for i in range(0, 24)] + [toy[0], toy[1], None]      # two repeats and one failed sample
    figures = dng_metrics(generated, [toy[i] for i in range(24, 48)], train=[toy[i] for i in range(8, 40)])
    who = shard_map(lambda x: (x, rank()), range(7))
    if rank() == 0: print('RESULT', json.dumps({'world': world_size(), 'figures': figures, 'who': who}))
''')


@pytest.mark.skipif(not torch.distributed.is_available(), reason='this torch has no torch.distributed')
def test_measures_shared_by_two_processes_equal_one(tmp_path):
    script = tmp_path / 'measure.py'
    script.write_text(MEASURE)
    out = {}
    for n in (1, 2):
        launch = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={n}']
                  if n > 1 else [sys.executable])
        r = subprocess.run(launch + [str(script)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        out[n] = json.loads(next(l for l in r.stdout.splitlines() if l.startswith('RESULT'))[len('RESULT'):])
    assert out[2]['world'] == 2
    assert out[2]['figures'] == out[1]['figures']                          # the same numbers, to the last digit
    assert out[1]['figures']['uniqueness'] < 25 / 27                       # the repeats were found
    assert out[2]['who'] == [[i, i % 2] for i in range(7)]                 # item i computed by process i mod 2
    assert out[1]['who'] == [[i, 0] for i in range(7)]


@pytest.mark.skipif(not torch.distributed.is_available(), reason='this torch has no torch.distributed')
@pytest.mark.parametrize('script', ['train_crystal_flow.py', 'train_cdvae.py'])
def test_training_scripts_run_on_two_processes(tmp_path, script):
    "The flow and CDVAE scripts under torchrun: both processes train, rank 0 alone writes the state and the model."
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / 'model.pt'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc-per-node=2',
           str(root / 'scripts' / script), '--dataset', 'toy', '--limit', '40', '--epochs', '2', '--hidden', '16',
           '--n-layers', '1', '--batch-size', '8', '--device', 'cpu', '--threads', '1', '--out', str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '2 processes' in r.stdout and 'epoch 2/2' in r.stdout and r.stdout.count('epoch 2/2') == 1   # rank 0 prints
    state = torch.load(out, weights_only=True)
    assert state['epochs_done'] == 2 and '2 processes' in state['hardware']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.pt', 'model.pt.last.pt', 'model.pt.last.pt.prev']


def test_one_process_scripts_refuse_torchrun(tmp_path):
    "Text tuning and MNIST diffusion train in one process: under torchrun they stop at once with one line."
    from pathlib import Path
    import os
    root = Path(__file__).resolve().parents[1]
    for script in ('train_text_tuning.py', 'train_mnist_diffusion.py'):
        r = subprocess.run([sys.executable, str(root / 'scripts' / script), '--out', str(tmp_path / 'x.pt')],
                           capture_output=True, text=True, timeout=120, env={**os.environ, 'WORLD_SIZE': '2'})
        assert r.returncode != 0 and 'without torchrun' in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not any(tmp_path.iterdir())
