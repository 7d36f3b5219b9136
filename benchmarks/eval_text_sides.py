"""The Chameleon models on chapter 20's frozen text side against the same models retrained on chapter 21's tuned one.

    python benchmarks/eval_text_sides.py --general data/runs/chameleon_general_tuned.pt \\
        --composition data/runs/chameleon_composition_tuned.pt --jobs 2 --record

Runs `eval_chameleon.py --n-prompts 30 --n-per 2 --steps 200 --scales 1` (held-out mp_mix_20 prompts: element and
crystal-system adherence, validity, uniqueness) for the shipped models and for the given checkpoints, and Chemeleon's
MP-40 protocol (`eval_chemeleon_protocol.py`, first 40 prompts x 5 samples, 100 steps) for both general models in
the settings where the text steers the sampler (`guidance`: the text alone; `constraints`: elements, formula and
symmetry enforced), all with the same code and seeds. `--jobs` runs that many measures at once (one thread each);
each run's JSON is kept in `--workdir` and reused when it is there. `--record` writes crystal_tutorial/weights/chameleon_text_side_measures.json.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parent / 'crystal_tutorial' / 'weights'
RECORD = WEIGHTS / 'chameleon_text_side_measures.json'
HELD_OUT = ['--n-prompts', '30', '--n-per', '2', '--steps', '200', '--scales', '1']
MP40 = ['--n-prompts', '40', '--n-samples', '5', '--steps', '100']


def runs(args) -> dict:
    "name: argv of each measure (the script, its options, its JSON file)."
    out = {}
    for kind in ('general', 'composition'):
        tuned = getattr(args, kind)
        out[f'{kind}_frozen'] = ['eval_chameleon.py', '--models', kind, *HELD_OUT]
        if tuned: out[f'{kind}_tuned'] = ['eval_chameleon.py', '--models', kind, '--weights', f'{kind}={tuned}', *HELD_OUT]
    if args.general:
        for setting in ('guidance', 'constraints'):
            out[f'mp40_{setting}_frozen'] = ['eval_chemeleon_protocol.py', *MP40, '--settings', setting]
            out[f'mp40_{setting}_tuned'] = ['eval_chemeleon_protocol.py', *MP40, '--settings', setting,
                                            '--weights', args.general]
    return out


def measure(name: str, argv: list, workdir: Path) -> dict:
    "Run one measure (or reuse its JSON) and return its figures."
    path = workdir / f'{name}.json'
    if not path.exists():
        t0 = time.time()
        proc = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:], '--json', str(path)],
                              capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        if proc.returncode: raise SystemExit(f'{name} failed:\n{proc.stderr[-2000:]}')
        print(f'{name}: {time.time() - t0:.0f} s', flush=True)
    return json.loads(path.read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--general', help='a general-text Chameleon checkpoint trained on the tuned text side')
    p.add_argument('--composition', help='a composition Chameleon checkpoint trained on the tuned text side')
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--workdir', default='data/text_side_measures')
    p.add_argument('--record', action='store_true', help=f'write {RECORD.name}')
    args = p.parse_args()
    if not (args.general or args.composition): p.error('give --general and/or --composition checkpoints')
    for f in (args.general, args.composition):
        if f and not Path(f).exists(): p.error(f'no checkpoint {f}: train it with scripts/train_chameleon.py --tuned')
    workdir = Path(args.workdir); workdir.mkdir(parents=True, exist_ok=True)
    todo, t0 = runs(args), time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        figures = dict(zip(todo, pool.map(lambda kv: measure(*kv, workdir), todo.items())))
    doc = {'date': time.strftime('%Y-%m-%d'), 'command': 'python benchmarks/eval_text_sides.py ' + ' '.join(sys.argv[1:]),
           'hardware': f'{platform.machine()} CPU, one thread per measure, {args.jobs} at once',
           'held_out': {'options': ' '.join(HELD_OUT)}, 'mp40': {'options': ' '.join(MP40)}}
    for name, f in figures.items():
        if name.startswith('mp40_'):
            _, setting, side = name.split('_')
            doc['mp40'].setdefault(side, {})[setting] = f['results'][setting]
        else:
            kind, side = name.split('_')
            doc['held_out'].setdefault(kind, {})[side] = f[kind]
    print(json.dumps(doc, indent=1))
    print(f'{time.time() - t0:.0f} s')
    if args.record:
        sys.path.insert(0, str(HERE.parent))
        from crystal_tutorial.core import write_text_atomic
        write_text_atomic(RECORD, json.dumps(doc, indent=1) + '\n')
        print(f'recorded in {RECORD.name}')


if __name__ == '__main__':
    main()
