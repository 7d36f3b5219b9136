"""Structure prediction by prototypes (chapter 15) on test crystals: match rate @1 and @k, RMSE, time per crystal.

    python benchmarks/eval_structure_prediction.py --dataset mp_mix_20 --split test --n 1000 --workers 2 --record
    python benchmarks/eval_structure_prediction.py --dataset perov_5 --pool perov_5 --n 1000 --workers 2 --record
    python benchmarks/eval_structure_prediction.py --dataset mpts_52 --n 1000 --workers 2 --record
    python benchmarks/eval_structure_prediction.py --dataset mp_mix_20 --n 200 --relax 50     # the effect of relaxation
    python benchmarks/eval_structure_prediction.py --dataset mp_mix_20 --n 200 --refine-from 50   # ... of SDEdit refinement

Only the composition of each target row is given to `predict_structure` (the cell's atoms); its k ranked candidates
are matched against the known structure with StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3), as DiffCSP does.
Besides the whole set, the figures are given for the targets whose reduced formula never occurs in the pool
('formula_new': new chemistry, not a polymorph of a training formula) and for those served by a prototype.
`--diffusion N` also runs the diffusion-only CSP model (`mp_mix_20_csp` or `perov5_csp`, 1,000 steps, one sample) on
the first N targets, for the side-by-side row. `--record` appends the figures to
crystal_tutorial/weights/structure_prediction_measures.json with the pool's SHA-256.
"""
import argparse
import json
import platform
import sys
import time
import warnings

import numpy as np
import pandas as pd

PUBLISHED = {  # single-sample CSP match rate / RMSE reported by the papers (MP-20 / Perov-5 / MPTS-52 test sets)
    'mp_mix_20': {'DiffCSP': (51.49, 0.0631), 'FlowMM': (61.39, 0.0566), 'DiffCSP++ (CSPML templates)': (70.58, 0.0272)},
    'perov_5': {'DiffCSP': (52.02, 0.0760), 'FlowMM': (53.15, 0.0992)},
    'mpts_52': {'DiffCSP': (12.19, 0.1786), 'FlowMM': (17.54, 0.1726)},
}
MEMORY_LIMIT = 8 * 2**30   # bytes of address space per worker


def predict_part(job):
    "One worker's share: (rows of (id, cif), pool, k, relax, refine_from, seed) -> a list of per-target dicts."
    import resource, torch
    torch.set_num_threads(1)
    warnings.simplefilter('ignore')
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))   # a runaway crystal fails alone, not the machine
    from pymatgen.core import Structure
    from crystal_tutorial.evaluation import match_targets
    from crystal_tutorial.structure_prediction import (load_prototype_pool, predict_structure, formula_key,
                                                       parse_composition)
    rows, pool_name, k, relax, refine_from, seed = job
    pool, out = load_prototype_pool(pool_name), []
    for mid, cif in rows:
        target = Structure.from_str(cif, fmt='cif')
        t0 = time.time()
        try: cands = predict_structure(target.composition, k=k, pool=pool, relax_steps=relax, refine_from=refine_from, seed=seed)
        except Exception as e: cands, error = [], f'{type(e).__name__}: {e}'
        else: error = None
        seconds = time.time() - t0
        m = match_targets([[c.structure for c in cands]], [target]).iloc[0].to_dict()
        out.append({'material_id': mid, 'n_atoms': len(target), 'seconds': seconds, 'error': error,
                    'route': cands[0].route if cands else 'none', 'prototype': cands[0].material_id if cands else None,
                    'formula_new': formula_key(parse_composition(target.composition)) not in pool.by_formula, **m})
    return out


def figures_of(df: pd.DataFrame) -> dict:
    "Match rate and RMSE at 1 and k of a per-target table (fractions; NaN RMSE when nothing matched)."
    if not len(df): return {'n': 0}
    rms = lambda col, m: float(df.loc[m, col].astype(float).mean()) if m.any() else float('nan')
    m1, mk = df.match_1.astype(bool), df.match_k.astype(bool)
    return {'n': int(len(df)), 'match_rate@1': float(m1.mean()), 'rmse@1': rms('rms_1', m1),
            'match_rate@k': float(mk.mean()), 'rmse@k': rms('rms_k', mk)}


def diffusion_row(dataset: str, rows: list) -> dict:
    "The diffusion-only CSP model on the same targets (one sample each)."
    from crystal_tutorial.crystal_diffusion import load_crystal_diffusion
    from crystal_tutorial.crystal_sampling import csp_benchmark
    from crystal_tutorial.crystals import Crystal
    name = 'perov5_csp' if dataset == 'perov_5' else 'mp_mix_20_csp'
    model = load_crystal_diffusion(name)
    targets = [Crystal.from_cif(cif) for _, cif in rows]
    targets = [c for c in targets if c.num_atoms <= model.config.max_atoms]
    return {'model': name, **csp_benchmark(model, targets, k=1)}


def main():
    args = p.parse_args()
    from crystal_tutorial.crystal_data import dataset_csv
    from crystal_tutorial.structure_prediction import SHIPPED_POOLS, load_prototype_pool
    df = pd.read_csv(dataset_csv(args.dataset, args.split, download=False), usecols=['material_id', 'cif']).iloc[:args.n]
    pool = args.pool or ('perov_5' if args.dataset == 'perov_5' else 'mp')
    leaked = set(df.material_id.astype(str)) & set(load_prototype_pool(pool).material_ids)
    if leaked: sys.exit(f'{len(leaked)} target crystals are in the pool {pool!r} (e.g. {sorted(leaked)[0]}): use a pool without them')
    rows = list(zip(df.material_id.astype(str), df.cif))
    shares = [rows[w::args.workers] for w in range(args.workers)]
    jobs = [(s, pool, args.k, args.relax, args.refine_from, args.seed) for s in shares]
    t0 = time.time()
    if args.workers > 1:
        import multiprocessing as mp
        from concurrent.futures import (ProcessPoolExecutor)  # a worker that dies raises here instead of hanging
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context('spawn')) as workers: parts = list(workers.map(predict_part, jobs))
    else: parts = [predict_part(jobs[0])]
    wall = time.time() - t0
    table = pd.DataFrame([r for part in parts for r in part])
    figures = {**figures_of(table), 'seconds_per_crystal': float(table.seconds.mean()), 'wall_seconds': wall,
               'prototype_share': float((table.route == 'prototype').mean()), 'workers': args.workers}
    for part in ('formula_new',):
        sub = figures_of(table[table[part]])
        figures.update({f'{part}_{k}': v for k, v in sub.items()})
    print(f'structure prediction on {args.dataset}/{args.split}, first {len(table)} crystals, pool {pool}, k={args.k}, '
          f'relax={args.relax}, refine_from={args.refine_from}: {wall:.0f} s wall on {args.workers} worker(s)')
    for key, value in figures.items(): print(f'{key:28s} {value:.4f}' if isinstance(value, float) else f'{key:28s} {value}')
    errors = table.error.dropna()
    if len(errors): print(f'{len(errors)} targets without a prediction, e.g. {errors.iloc[0]}')
    if args.diffusion:
        d = diffusion_row(args.dataset, rows[:args.diffusion])
        figures['diffusion'] = d
        print(f"diffusion only ({d['model']}, 1,000 steps, first {d['n']}): match rate {d['match_rate@1']:.4f}, RMSE {d['rmse@1']:.4f}, "
              f"{1 / d['crystals_per_s']:.2f} s per crystal")
    for name, (mr, rmse) in PUBLISHED.get(args.dataset, {}).items(): print(f'published {name:28s} {mr:.2f} % / {rmse:.4f}')
    if args.table: table.to_csv(args.table, index=False)
    if args.json: open(args.json, 'w').write(json.dumps(figures, indent=2) + '\n')
    if args.record:
        from crystal_tutorial.structure_prediction import record_prediction_measure
        entry = record_prediction_measure(pool, figures, 'python benchmarks/eval_structure_prediction.py ' + ' '.join(
            a for a in sys.argv[1:] if a != '--record'), dataset=args.dataset, split=args.split, k=args.k, relax=args.relax,
            refine_from=args.refine_from, hardware=f'{platform.machine()} CPU, {args.workers} process(es) of one thread')
        print(f"recorded ({entry['date']}, pool {entry['pool_sha256'][:12]}...)")


p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--dataset', default='mp_mix_20')
p.add_argument('--split', default='test')
p.add_argument('--n', type=int, default=1000, help='the first n crystals of the split')
p.add_argument('--pool', default=None, help="a shipped pool ('mp', 'perov_5') or a pool file (default: by dataset)")
p.add_argument('--k', type=int, default=5, help='candidates per composition (match rate @1 and @k)')
p.add_argument('--relax', type=int, default=0, help='CHGNet relaxation steps per candidate before ranking')
p.add_argument('--refine-from', type=int, default=0, help='SDEdit refinement from this diffusion step (0: none)')
p.add_argument('--diffusion', type=int, default=0, help='also run the diffusion-only CSP model on the first N targets')
p.add_argument('--workers', type=int, default=1, help='processes of one thread each')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--json', default=None, help='also write the figures here')
p.add_argument('--table', default=None, help='also write the per-target table (CSV) here')
p.add_argument('--record', action='store_true', help='append the figures to the shipped measures of the pool')

if __name__ == '__main__':
    main()
