"""Training throughput with torch.distributed: one process against N processes (torchrun, gloo on CPU, NCCL on GPU),
the same model, data and global batch. Prints a table of crystals per second and records it.

    python benchmarks/bench_distributed.py --procs 1 2 --n 1024 --epochs 3 --record

Each process uses one thread on a CPU (`--threads`), so that N processes use N cores: the speed-up is what data
parallelism buys on a machine with that many free cores. The first epoch is a warm-up and is not timed.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from crystal_tutorial.core import write_text_atomic

RECORD = Path(__file__).with_name('distributed_measures.json')


def worker(args):
    import torch
    from crystal_tutorial.core import set_seed
    from crystal_tutorial.learner import init_distributed, rank, world_size
    from crystal_tutorial.crystal_diffusion import config_for_data, crystal_diffusion_learner
    from crystal_tutorial.crystals import toy_dataset
    from crystal_tutorial.crystal_data import load_dataset
    torch.set_num_threads(args.threads)
    init_distributed()
    try: ds = load_dataset(args.dataset, args.split, limit=args.n, verbose=False)
    except Exception: ds = toy_dataset()                                        # no dataset copy: toy crystals
    set_seed(0)
    config = config_for_data(ds, task='csp', batch_size=args.batch_size, epochs=args.epochs + 1)
    learn = crystal_diffusion_learner(config, ds, None, device=args.device).distribute()
    learn.amp = args.amp
    if args.compile: learn.model.net.compile(dynamic=True)                      # in place: the same state_dict
    t0 = time.perf_counter()
    learn.fit(1, progress=False)                                                # warm-up (and compilation)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    learn.fit(args.epochs, progress=False)
    seconds = time.perf_counter() - t0
    if rank() == 0:
        print('RESULT', json.dumps({'processes': world_size(), 'amp': args.amp, 'compile': args.compile,
                                    'warmup_s': warmup, 'crystals': len(ds), 'seconds': seconds,
                                    'crystals_per_s': len(ds) * args.epochs / seconds,
                                    'final_loss': learn.history[-1]['train_loss'], 'device': str(learn.device)}))


def launch(args, n: int) -> dict:
    cmd = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={n}'] if n > 1
           else [sys.executable]) + [str(Path(__file__).resolve())]
    env = {**os.environ, 'OMP_NUM_THREADS': str(args.threads), 'BENCH_WORKER': json.dumps(vars(args))}   # torchrun eats --n
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f'{n} process(es) failed:\n{r.stderr[-3000:]}')
    return json.loads(next(l for l in r.stdout.splitlines() if l.startswith('RESULT'))[len('RESULT'):])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--procs', type=int, nargs='+', default=[1, 2], help='numbers of processes to compare')
    p.add_argument('--dataset', default='perov_5'); p.add_argument('--split', default='val')
    p.add_argument('--n', type=int, default=1024, help='training crystals')
    p.add_argument('--epochs', type=int, default=3, help='timed epochs (after one warm-up epoch)')
    p.add_argument('--batch-size', type=int, default=64, help='the global batch')
    p.add_argument('--threads', type=int, default=1, help='threads per process')
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', action='store_true', help='mixed precision: the loss in bfloat16 autocast')
    p.add_argument('--compile', action='store_true', help='torch.compile the denoiser (in place, dynamic shapes)')
    p.add_argument('--record', action='store_true', help=f'append the figures to {RECORD.name}')
    if 'BENCH_WORKER' in os.environ: return worker(argparse.Namespace(**json.loads(os.environ['BENCH_WORKER'])))
    args = p.parse_args()
    rows = [launch(args, n) for n in args.procs]
    base = rows[0]['crystals_per_s']
    print(f"{'processes':>9} {'crystals/s':>11} {'speed-up':>9} {'final loss':>11}")
    for r in rows:
        r['speedup'] = r['crystals_per_s'] / base
        print(f"{r['processes']:>9} {r['crystals_per_s']:>11.1f} {r['speedup']:>8.2f}x {r['final_loss']:>11.4f}")
    if args.record:
        entry = {'date': time.strftime('%Y-%m-%d'), 'command': 'python benchmarks/bench_distributed.py ' + ' '.join(sys.argv[1:]),
                 'cpu_count': os.cpu_count(), 'load_average': os.getloadavg()[0], 'rows': rows}
        old = json.loads(RECORD.read_text()) if RECORD.exists() else []
        write_text_atomic(RECORD, json.dumps(old + [entry], indent=1) + '\n')
        print(f'recorded in {RECORD}')


if __name__ == '__main__':
    main()
