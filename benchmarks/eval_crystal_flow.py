"""Steps against quality for the crystal flow models (notebook 16): CSP match rate and RMSE, or DNG validity,
uniqueness and coverage, with time and network evaluations.

    python benchmarks/eval_crystal_flow.py perov5_csp --n 200 --methods euler heun --steps 10 20 50 \\
        --anneal 0 1 --twin-steps 20 50 --record

One sample per composition of the first `--n` crystals of Perov-5 `test`, matched with
StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) (chapter 08's `match_targets`, the matcher of
`eval_crystal_diffusion.py`), for every ODE scheme and number of steps. `--twin-steps` adds the diffusion
twin (`load_crystal_diffusion`) with that many predictor-corrector steps on the same crystals: its measure
recorded by `eval_crystal_diffusion.py --steps S --record` (same split, n and seed 0) when there is one,
else sampled here; the twin's recorded 1,000-step figure is read from
crystal_tutorial/weights/crystal_diffusion_measures.json. `--record` appends the table to
crystal_tutorial/weights/crystal_flow_measures.json (with the SHA-256 of the weights measured), where notebook
16 finds it. `--held-out` measures instead the crystals of Perov-5 `val` that training held out (the training
script's split), to choose a sampler setting such as `--anneal` without looking at the test split.

A DNG flow (`train_crystal_flow.py --task dng`) is measured like `eval_crystal_diffusion.py` measures a DNG
model: `--n` samples per setting against the first `--n` crystals of the split (`flow_dng_benchmark`, chapter
08's `dng_metrics`; novelty against the train split), and the DNG diffusion twin with `--twin-steps`:

    python benchmarks/eval_crystal_flow.py data/runs/crystal_flow_mp_mix_20_dng.pt --dataset mp_mix_20 \\
        --n 1000 --methods euler --steps 5 10 20 50 100 --twin-steps 5 10 20 50 100 --record
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from crystal_tutorial.core import write_text_atomic
from crystal_tutorial.crystal_diffusion import load_crystal_diffusion
from crystal_tutorial.crystal_sampling import csp_benchmark, dng_benchmark, shipped_measures
from crystal_tutorial.crystal_data import load_dataset, sha256_file
from crystal_tutorial.flow_matching import (FLOW_MEASURES_FILE, SHIPPED_FLOWS, flow_csp_benchmark, flow_dng_benchmark,
                                            load_crystal_flow, read_flow_measures)
from eval_crystal_diffusion import measure_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'scripts'))
from _run import validation_split                 # the training script's split


# the diffusion model of the same data and task
TWINS = {('perov_5', 'csp'): 'perov5_csp', ('mp_mix_20', 'csp'): 'mp_mix_20_csp',
         ('mp_mix_20', 'dng'): 'mp_mix_20_dng'}
DNG_FIGURES = ['n', 'struct_validity', 'comp_validity', 'uniqueness', 'novelty', 'cov_recall',
               'cov_precision', 'wdist_density', 'wdist_num_elems']


def as_row(f: dict, steps: int, evals: int, model: str = 'diffusion') -> dict:
    "A diffusion measure (chapter 12's figures) as a row of the flow table."
    figures = ({k: f[k] for k in DNG_FIGURES if k in f} if 'struct_validity' in f else
               {'n': f['n'], 'match_rate': f['match_rate@1'], 'rmse': f['rmse@1']})
    return {'model': model, 'method': 'pc', 'steps': steps, 'nfe': steps * evals, **figures,
            's_per_crystal': f.get('workers', 1) / f['crystals_per_s']}     # seconds of one worker


def recorded(name: str, steps: int, n: int | None = None, split: str = 'test'):
    "The latest recorded measure of shipped diffusion model `name` at `steps` (and `n` crystals), or None."
    entries = [e for e in shipped_measures(name) if e.get('steps') == steps and e.get('split') == split
               and not e.get('charge_balanced') and (n is None or e['figures'].get('n') == n)]
    return entries[-1] if entries else None


def twin_rows(name: str, targets, steps_list, args, train=None) -> list:
    "The diffusion twin with fewer steps on the same crystals (DNG: as many samples), as table rows."
    # its measure recorded by eval_crystal_diffusion.py when there is one, else sampled here
    twin, rows = load_crystal_diffusion(name), []
    evals = 2 if twin.config.step_lr > 0 else 1                     # corrector + predictor per step
    for steps in steps_list:
        same_draw = not args.held_out and args.seed == 0                # as eval_crystal_diffusion.py draws
        e = recorded(name, steps, len(targets), args.split) if same_draw else None
        if e is not None: f = e['figures']                            # eval_crystal_diffusion.py --record
        elif twin.task == 'dng':
            f = dng_benchmark(twin, len(targets), targets, train=train, steps=steps, bs=args.bs,
                              seed=args.seed)
        else: f = csp_benchmark(twin, targets, steps=steps, bs=args.bs, seed=args.seed)
        rows.append({**as_row(f, steps, evals), **({'command': e['command']} if e else {})})
        print_row(rows[-1])
    return rows


def recorded_twin(name: str):
    "The twin's recorded large measure (1,000 steps), as a table row, or None."
    e = recorded(name, 1000)
    if e is None: return None
    return {**as_row(e['figures'], 1000, 2, 'diffusion (recorded)'), 'command': e['command'],
            'date': e['date']}


def main():
    args = p.parse_args()
    if min(args.steps + args.twin_steps) < 1: p.error(f'--steps must be 1 or more ODE steps, got {min(args.steps + args.twin_steps)}')
    if args.threads: torch.set_num_threads(args.threads)
    model = load_crystal_flow(args.model)
    targets, train = measured_crystals(args, model.task)
    rows, t0 = [], time.time()
    for anneal in args.anneal if model.task == 'csp' else [0.0]:
        for method in args.methods:
            for steps in args.steps:
                f = (flow_csp_benchmark(model, targets, steps, method, anneal, bs=args.bs, seed=args.seed)
                     if model.task == 'csp' else
                     flow_dng_benchmark(model, len(targets), targets, train, steps, method, bs=args.bs,
                                        seed=args.seed))
                rows.append({'model': 'flow', **f}); print_row(rows[-1])
    twin_name = args.twin or TWINS.get((args.dataset, model.task))
    if args.twin_steps and twin_name is None: p.error(f'no diffusion twin known for {args.dataset}: give --twin')
    rows += twin_rows(twin_name, targets, args.twin_steps, args, train) if args.twin_steps else []
    twin = recorded_twin(twin_name) if twin_name else None
    if twin: print_row(twin)
    print(f'{time.time() - t0:.0f} s on {model.device}, {torch.get_num_threads()} thread(s)')
    if args.record: record(args, model, targets, rows, twin, time.time() - t0)


def measured_crystals(args, task: str) -> tuple:
    "The crystals measured against (CSP: targets; DNG: coverage references) and, for DNG, the novelty set."
    if args.held_out:
        if args.record: p.error('--record keeps test-split measures: drop --held-out or --record')
        args.split = 'val'
        ds = load_dataset(args.dataset, 'val')
        targets = [ds[int(i)] for i in validation_split(len(ds), 0.05)[1][:args.n]]
    else:
        ds = load_dataset(args.dataset, args.split)
        targets = [ds[i] for i in range(min(args.n, len(ds)))]
    train = load_dataset(args.dataset, 'train') if task == 'dng' and args.split != 'train' else None
    return targets, train


def record(args, model, targets, rows: list, twin, seconds: float):
    "Append the table to FLOW_MEASURES_FILE, with the SHA-256 of the weights measured."
    weights = Path(args.model) if Path(args.model).exists() else Path(__file__).parents[1] / 'crystal_tutorial/weights' / SHIPPED_FLOWS[args.model][0]
    entry = {'model': args.model if args.model in SHIPPED_FLOWS else weights.name,
             'weights_sha256': sha256_file(weights), 'task': model.task,
             'date': time.strftime('%Y-%m-%d'), 'command': 'python benchmarks/eval_crystal_flow.py ' + ' '.join(measure_args(sys.argv[1:])),
             'dataset': args.dataset, 'split': args.split, 'n': len(targets), 'seconds': round(seconds),
             'hardware': f'{platform.machine()} {model.device.type}, {torch.get_num_threads()} thread(s)', 'rows': rows, 'twin': twin}
    write_text_atomic(FLOW_MEASURES_FILE, json.dumps(read_flow_measures() + [entry], indent=1,
                                                     ensure_ascii=False) + '\n')
    print(f'recorded in {FLOW_MEASURES_FILE.name}')


def print_row(r: dict):
    if 'struct_validity' in r:
        quality = (f"valid {100 * r['struct_validity']:5.1f} / {100 * r['comp_validity']:5.1f} %  "
                   f"unique {100 * r['uniqueness']:5.1f} %  "
                   f"COV-R {100 * r['cov_recall']:5.1f} %  COV-P {100 * r['cov_precision']:5.1f} %")
    else: quality = f"match {100 * r['match_rate']:5.1f} %  RMSE {r['rmse']:.4f}"
    anneal = f"anneal {r['anneal']:<4g}" if r['model'] == 'flow' and 'anneal' in r else ' ' * 11
    print(f"{r['model']:22s} {r['method']:8s} {anneal} steps {r['steps']:5d}  evals {r['nfe']:5d}  {quality}  "
          f"{r['s_per_crystal']:.4f} s/crystal", flush=True)


p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
p.add_argument('model', nargs='?', default='perov5_csp',
               help='a shipped flow model name (perov5_csp) or a checkpoint path')
p.add_argument('--dataset', default='perov_5')
p.add_argument('--split', default='test')
p.add_argument('--n', type=int, default=200,
               help='the first n crystals of the split (DNG: also the samples per setting)')
p.add_argument('--methods', nargs='+', default=['euler', 'heun'], help='ODE schemes: euler, heun, midpoint')
p.add_argument('--steps', nargs='+', type=int, default=[10, 20, 50], help='ODE steps to measure')
p.add_argument('--anneal', nargs='+', type=float, default=[0.0],
               help="FlowMM's anti-annealing s of the coordinate velocity (0: none); several: each")
p.add_argument('--twin-steps', nargs='*', type=int, default=[],
               help='also the diffusion twin with these step counts (its recorded measure of the same '
                    'crystals when there is one, else sampled here)')
p.add_argument('--twin', default=None,
               help="the shipped diffusion model to compare with (default: that of --dataset and the flow's task)")
p.add_argument('--bs', type=int, default=100, help='crystals sampled at once')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--threads', type=int, default=1,
               help='CPU threads (default 1, like the recorded diffusion measure)')
p.add_argument('--held-out', action='store_true',
               help="the crystals of 'val' held out by the training script, not the test split")
p.add_argument('--record', action='store_true',
               help='append the table to crystal_tutorial/weights/crystal_flow_measures.json')

if __name__ == '__main__':
    main()
