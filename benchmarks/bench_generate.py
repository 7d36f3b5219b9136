"""Wall time of the first command a user runs, a new process each time, model loading and files included.

    python benchmarks/bench_generate.py --seeds 0 1 2 3 4 --steps default 1000

Runs `crystal-tutorial generate "Ti O S" --n-atoms 8 --n-samples 10 --seed S --out <tmp>` for each seed and each
`--steps` setting ('default': no --steps, what a user gets) and prints the wall times, and the validity, uniqueness and
prompt adherence that the run's summary.json reports. Threads: the command line's own choice (idle cores, 1 to 4).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = Path(sys.executable).parent / 'crystal-tutorial'


def run(prompt: str, seed: int, steps: str, extra: list) -> tuple[float, dict]:
    "Wall seconds of one `generate` run and its summary.json."
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'out'
        cmd = [str(EXE), 'generate', prompt, '--n-atoms', '8', '--n-samples', '10', '--seed', str(seed), '--out',
               str(out), '--quiet'] + ([] if steps == 'default' else ['--steps', steps]) + extra
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})
        wall = time.time() - t0
        if proc.returncode: sys.exit(f'failed: {" ".join(cmd)}\n{proc.stderr[-2000:]}')
        return wall, json.loads((out / 'summary.json').read_text())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--prompt', default='Ti O S')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4])
    p.add_argument('--steps', nargs='+', default=['default', '1000'], help="'default' or a number of steps")
    p.add_argument('extra', nargs='*', help='more options for generate, after --')
    a = p.parse_args(argv)
    print(f'{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}')
    for steps in a.steps:
        walls = []
        for seed in a.seeds:
            wall, s = run(a.prompt, seed, steps, a.extra)
            walls.append(wall)
            print(f"steps {steps:>7} (ran {s['steps']}) seed {seed}: {wall:5.1f} s wall  struct {s['struct_valid']:.2f}  "
                  f"comp {s['comp_valid']:.2f}  unique {s['unique']:.2f}  adherence {s['prompt_adherence']:.2f}  "
                  f"redrawn {s['redrawn']}", flush=True)
        print(f'steps {steps}: median {statistics.median(walls):.1f} s, {min(walls):.1f}-{max(walls):.1f} s')


if __name__ == '__main__':
    main()
