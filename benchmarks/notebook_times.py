"""Wall time of every numbered notebook, run top to bottom the way the tests run it (nbdev_test), and the time a
student needs to read it.

    python benchmarks/notebook_times.py [--mode fast|full] [--read-only] [--cells] [--record] [nbs/04_diffusion.ipynb ...]

Prints one line per notebook and flags fast-mode runs over the 3-minute budget. Reading time is estimated from the
text: prose at 200 words per minute and code at 30 non-blank lines per minute (a careful first reading; calibrated so
that the old 410-cell crystals chapter came out at the 80 minutes a reader reported). "Read and run" adds the run time
of the mode; the lecture's budget is 45 minutes per notebook in full mode. `--cells` runs each notebook with
nbconvert instead (into a temporary copy) and also lists the cells that ran for a minute or more: the cells a
notebook must announce with a "runs for about N minutes" line above them. `--record` merges the figures into
benchmarks/notebook_times.json. Pin the threads to mimic a 2-core laptop with
`taskset -c 0,1 python benchmarks/notebook_times.py`.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / 'benchmarks' / 'notebook_times.json'
WORDS_PER_MIN, CODE_LINES_PER_MIN, BUDGET_MIN = 200, 30, 45


def reading_minutes(nb_path: Path) -> tuple[float, int, int]:
    "(minutes to read, words of prose, non-blank code lines) of a notebook, outputs not counted."
    cells = json.loads(nb_path.read_text())['cells']
    src = lambda c: ''.join(c['source'])
    words = sum(len(src(c).split()) for c in cells if c['cell_type'] == 'markdown')
    lines = sum(sum(1 for l in src(c).splitlines() if l.strip() and not l.startswith('#|'))
                for c in cells if c['cell_type'] == 'code')
    return words / WORDS_PER_MIN + lines / CODE_LINES_PER_MIN, words, lines


def run_seconds(nb: Path, mode: str) -> tuple[float, bool]:
    "Wall seconds of `nbdev_test` on one notebook in `mode`, and whether it passed."
    nbdev_test = Path(sys.executable).parent / 'nbdev_test'
    env = {**os.environ, 'CRYSTAL_TUTORIAL_MODE': mode, 'MPLBACKEND': 'Agg'}
    t0 = time.time()
    proc = subprocess.run([str(nbdev_test), '--path', str(nb.relative_to(ROOT))], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    return time.time() - t0, proc.returncode == 0


def slow_cells(nb: Path, mode: str, threshold: float = 60.0, keep=None) -> tuple[float, bool, list]:
    "Run `nb` with nbconvert into a copy (in `keep`, else temporary): (wall seconds, passed, [(cell, seconds, line)])."
    import tempfile
    from datetime import datetime
    env = {**os.environ, 'CRYSTAL_TUTORIAL_MODE': mode}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep or tmp) / nb.name
        t0 = time.time()
        proc = subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'notebook', '--execute',
                               '--ExecutePreprocessor.timeout=-1', str(nb), '--output', str(out)], cwd=nb.parent,
                              env=env, capture_output=True, text=True)
        seconds = time.time() - t0
        if proc.returncode or not out.exists(): return seconds, False, []
        stamp = lambda s: datetime.fromisoformat(s.replace('Z', '+00:00'))
        slow = []
        for i, c in enumerate(json.loads(out.read_text())['cells']):
            ex = c.get('metadata', {}).get('execution', {})
            if 'iopub.execute_input' in ex and 'shell.execute_reply' in ex:
                dt = (stamp(ex['shell.execute_reply']) - stamp(ex['iopub.execute_input'])).total_seconds()
                if dt >= threshold: slow.append((i, round(dt), ''.join(c['source']).splitlines()[0][:60]))
        return seconds, True, slow


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='*', help='default: every nbs/[0-9][0-9]_*.ipynb')
    p.add_argument('--mode', choices=['fast', 'full'], default='fast')
    p.add_argument('--budget', type=float, default=180, help='seconds allowed per notebook in fast mode')
    p.add_argument('--read-only', action='store_true', help='only the reading estimate; run nothing')
    p.add_argument('--cells', action='store_true', help='run with nbconvert and list the cells of a minute or more')
    p.add_argument('--keep', default=None, help='with --cells: a folder for the executed copies')
    p.add_argument('--record', action='store_true', help=f'merge the figures into {RECORD.name}')
    args = p.parse_args()
    notebooks = [Path(n).resolve() for n in args.notebooks] or sorted((ROOT / 'nbs').glob('[0-9][0-9]*_*.ipynb'))
    record = {}                                            # this run's figures, merged into RECORD at the end
    print(f'{os.cpu_count()} CPUs visible, mode {args.mode}' + (' (reading only)' if args.read_only else ''))
    failed = 0
    for nb in notebooks:
        read, words, lines = reading_minutes(nb)
        entry = record.setdefault(nb.stem, {})
        entry.update(read_min=round(read, 1), prose_words=words, code_lines=lines)
        line = f'{nb.name:34s} read {read:5.1f} min ({words:5d} words, {lines:4d} code lines)'
        if not args.read_only:
            if args.cells:
                seconds, ok, slow = slow_cells(nb, args.mode, keep=args.keep)
                entry[f'slow_cells_{args.mode}'] = slow
            else: seconds, ok = run_seconds(nb, args.mode)
            failed += not ok
            entry[f'run_s_{args.mode}'] = round(seconds, 1)
            over = args.mode == 'fast' and seconds > args.budget
            total = read + seconds / 60
            line += f'  run {seconds:7.1f} s  read+run {total:5.1f} min  ' + (
                'FAILED' if not ok else 'OVER BUDGET' if over or (args.mode == 'full' and total > BUDGET_MIN)
                else 'ok')
        print(line, flush=True)
        for i, dt, first in entry.get(f'slow_cells_{args.mode}', []) if args.cells else []:
            print(f'    cell {i:3d}: {dt:5d} s  {first}', flush=True)
    if args.record:                                        # read again: another run may have recorded meanwhile
        merged = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        for stem, entry in record.items(): merged.setdefault(stem, {}).update(entry)
        merged['_about'] = {'reading': f'prose {WORDS_PER_MIN} words/min, code {CODE_LINES_PER_MIN} lines/min',
                            'hardware': f'{platform.machine()}, {os.cpu_count()} CPUs visible',
                            'command': 'python ' + ' '.join(sys.argv)}
        RECORD.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + '\n')
        print(f'recorded in {RECORD.relative_to(ROOT)}')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
