"""Wall time of every numbered notebook, run top to bottom the way the tests run it (nbdev_test).

    python benchmarks/notebook_times.py [--mode fast|full] [nbs/03_diffusion.ipynb ...]

Prints one line per notebook and flags fast-mode runs over the 3-minute budget. Pin the threads to mimic a
2-core laptop with `taskset -c 0,1 python benchmarks/notebook_times.py`.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('notebooks', nargs='*', help='default: every nbs/[0-9][0-9]_*.ipynb')
p.add_argument('--mode', choices=['fast', 'full'], default='fast')
p.add_argument('--budget', type=float, default=180, help='seconds allowed per notebook in fast mode')
args = p.parse_args()

notebooks = [Path(n).resolve() for n in args.notebooks] or sorted((ROOT / 'nbs').glob('[0-9][0-9]*_*.ipynb'))
nbdev_test = Path(sys.executable).parent / 'nbdev_test'
env = {**os.environ, 'CRYSTAL_TUTORIAL_MODE': args.mode, 'MPLBACKEND': 'Agg'}
print(f'{os.cpu_count()} CPUs visible, mode {args.mode}')
failed = 0
for nb in notebooks:
    t0 = time.time()
    proc = subprocess.run([str(nbdev_test), '--path', str(nb.relative_to(ROOT))], cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.time() - t0
    over = args.mode == 'fast' and dt > args.budget
    status = 'FAILED' if proc.returncode else ('OVER BUDGET' if over else 'ok')
    failed += bool(proc.returncode)
    print(f'{nb.name:32s} {dt:7.1f} s  {status}', flush=True)
sys.exit(1 if failed else 0)
