"""Quality of a trained crystal diffusion model: CSP match rate and RMSE, or DNG validity, uniqueness, novelty, coverage, EMDs.

    python benchmarks/eval_crystal_diffusion.py perov5_csp --dataset perov_5 --split test --n 200 --steps 1000 [--k 1]
    python benchmarks/eval_crystal_diffusion.py carbon24_dng --dataset carbon_24 --split test --n 200 [--relax 100]

CSP (`csp_benchmark`, notebook 12): one structure (or k) per composition of the first `--n` test crystals, matched against the
known structure with pymatgen's StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) as DiffCSP does: match rate, RMSE
(normalised RMS distance averaged over matched pairs) and sampling speed.

DNG (`dng_benchmark`, notebook 12): `--n` samples (cell sizes drawn from the training data): structural and compositional
validity, uniqueness, novelty against `--train-split` (skipped for single-element data such as Carbon-24, where every sample
would be matched against thousands of same-formula references), CDVAE's coverage (COV-R, COV-P) and the Wasserstein
distances of density and number of elements against the first `--n` crystals of `--split`. With `--relax N`: N CHGNet
relaxation steps per valid sample and the share within 0.1 eV/atom of the Materials Project hull (needs the hull data).
`--charge-balanced` samples with the charge-balanced decoding of notebook 12 (the figures then measure the model and that
constraint together, not the model alone as the papers do). `--json` also writes the figures to a file (for model cards);
`--save` writes the DNG samples (lattice, frac_coords, atom_types of each, a torch file) for a later look or relaxation.
`--record` appends the figures of a shipped model to crystal_tutorial/weights/crystal_diffusion_measures.json
(`record_measure`, notebook 12), where notebook 13 finds them beside its own smaller measures.
`--workers W` runs the measure in W processes of one thread each (seeds seed, seed+1, ...), for a 1,000-crystal run on a
multi-core CPU: the script starts itself under `torchrun` (torch.distributed, gloo). DNG: each process samples its share,
every process gets all the crystals, and the measures are shared too (chapter 01's `shard_map`: validity, uniqueness,
novelty and the coverage fingerprints item by item); rank 0 reports. CSP: target i goes to process i mod W, which samples and matches it (the
matcher is the other half of the cost), and rank 0 gathers the match table.

    python benchmarks/eval_crystal_diffusion.py mp_mix_20_dng --dataset mp_mix_20 --n 1000 --workers 2
    python benchmarks/eval_crystal_diffusion.py perov5_csp --dataset perov_5 --n 1000 --workers 2
"""
import argparse
import json
import platform
import sys
import time

from crystal_tutorial.crystal_diffusion import SHIPPED_MODELS, load_crystal_diffusion
from crystal_tutorial.crystal_sampling import ChargeBalance, csp_benchmark, dng_benchmark, sample_crystals
from crystal_tutorial.evaluation import dng_metrics
from crystal_tutorial.crystal_data import load_dataset

def sample_part(job):
    "One worker's share of the DNG samples: (model, n, steps, bs, seed, step_lr, charge_balanced) -> list of Crystals."
    import torch
    torch.set_num_threads(1)
    name, n, steps, bs, seed, step_lr, charge_balanced = job
    model, g, out = load_crystal_diffusion(name), torch.Generator().manual_seed(seed), []
    if step_lr is not None: model.config.step_lr = step_lr
    for start in range(0, n, bs): out += sample_crystals(model, n=min(bs, n - start), generator=g, steps=steps,
                                                          constraints=[ChargeBalance()] if charge_balanced else ())
    return out


def relaunch_under_torchrun(workers: int):
    "Start this script again as `workers` torch.distributed processes (one thread each); returns their exit code."
    import os, subprocess
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={workers}', __file__]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'EVAL_ARGV': json.dumps(sys.argv[1:])}   # torchrun would read --n itself
    return subprocess.run(cmd, env=env).returncode


def sample_distributed(args, world: int) -> list:
    "This process's share of the DNG samples, then everyone's (in rank order), on every process."
    import torch.distributed as dist
    from crystal_tutorial.learner import rank
    me = rank()
    part = sample_part((args.model, args.n // world + (me < args.n % world), args.steps, args.bs, args.seed + me,
                        args.step_lr, args.charge_balanced))
    parts = [None] * world
    dist.all_gather_object(parts, part)
    return [c for p in parts for c in p]


def csp_distributed(model, reference: list, args, world: int) -> dict | None:
    "CSP figures with target i sampled and matched by process i mod `world`; rank 0 gets them, the others None."
    import pandas as pd
    import torch
    import torch.distributed as dist
    from crystal_tutorial.learner import rank
    from crystal_tutorial.evaluation import csp_metrics, match_targets
    torch.set_num_threads(1)
    me, g = rank(), torch.Generator().manual_seed(args.seed + rank())
    mine = list(range(me, len(reference), world))
    candidates, t0 = [[] for _ in mine], time.time()
    for _ in range(args.k):
        for start in range(0, len(mine), args.bs):
            chunk = [reference[i] for i in mine[start:start + args.bs]]
            for j, c in enumerate(sample_crystals(model, compositions=chunk, steps=args.steps, generator=g)):
                candidates[start + j].append(None if c is None else c.to_structure())
    seconds = time.time() - t0                                     # sampling only, as csp_benchmark counts it
    table = match_targets(candidates, [reference[i].to_structure() for i in mine]) if mine else pd.DataFrame()
    tables = [None] * world
    dist.all_gather_object(tables, (mine, table, seconds))
    if me: return None
    order = sorted((i, row) for idx, t, _ in tables for i, (_, row) in zip(idx, t.iterrows()))
    return {'n': len(reference), 'k': args.k, **csp_metrics(pd.DataFrame([row for _, row in order])),
            'crystals_per_s': len(reference) * args.k / max(sec for _, _, sec in tables), 'workers': world}


def measure_args(argv: list) -> list:
    "The command-line arguments that decide a measure: those naming output files (--json, --save) left out."
    out, skip = [], False
    for a in argv:
        if skip: skip = False; continue
        if a in ('--json', '--save'): skip = True; continue
        if not a.startswith(('--json=', '--save=')): out.append(a)
    return out


def main():
    import os
    argv = json.loads(os.environ['EVAL_ARGV']) if 'EVAL_ARGV' in os.environ else sys.argv[1:]   # under torchrun: the env
    args = p.parse_args(argv)
    from crystal_tutorial.learner import init_distributed
    world = init_distributed()
    if args.workers > 1 and world == 1: sys.exit(relaunch_under_torchrun(args.workers))
    if args.record and args.model not in SHIPPED_MODELS:
        p.error(f"--record keeps measures of shipped models only ({', '.join(SHIPPED_MODELS)}), not of {args.model!r}: drop --record or use --json")

    model = load_crystal_diffusion(args.model)
    if args.step_lr is not None: model.config.step_lr = args.step_lr
    ds = load_dataset(args.dataset, args.split)
    reference = [ds[i] for i in range(min(args.n, len(ds)))]
    steps = args.steps or model.config.n_steps
    t0 = time.time()
    if model.task == 'csp':
        if world > 1:                                              # under torchrun: a share of the targets each
            figures = csp_distributed(model, reference, args, world)
            if figures is None: return                              # rank 0 reports
        else: figures = csp_benchmark(model, reference, k=args.k, steps=args.steps, bs=args.bs, seed=args.seed)
        print(f'{args.model} on {args.dataset}/{args.split}, first {len(reference)} crystals, k={args.k}, steps={steps}, step_lr={model.config.step_lr:g}')
    else:
        single_element = len({c.formula for c in reference}) == 1
        train = None if single_element or args.train_split == 'none' else load_dataset(args.dataset, args.train_split)
        if world > 1:                       # under torchrun: a share of the samples and of the measures each
            from crystal_tutorial.learner import rank
            samples = sample_distributed(args, world)
            seconds = time.time() - t0
            figures = {**dng_metrics(samples, reference, train), 'crystals_per_s': args.n / seconds, 'workers': world}
            if rank(): return                                       # rank 0 reports
        else:
            figures, samples = dng_benchmark(model, args.n, reference, train=train, steps=args.steps, bs=args.bs, seed=args.seed,
                                             return_samples=True,
                                             constraints=[ChargeBalance()] if args.charge_balanced else ())
        print(f'{args.model}: {args.n} DNG samples, steps={steps}, step_lr={model.config.step_lr:g}{", charge-balanced" if args.charge_balanced else ""}; references: the first {len(reference)} of {args.dataset}/{args.split}'
              + ('' if train is not None else '; novelty not measured'))
        if args.save:
            import torch
            torch.save([None if c is None else {'lattice': c.lattice, 'frac_coords': c.frac_coords, 'atom_types': c.atom_types} for c in samples], args.save)
        if args.relax:
            import numpy as np
            from crystal_tutorial.evaluation import structure_validity
            from crystal_tutorial.stability import ConvexHull, relax_structures
            valid = [c.to_structure() for c in samples if c is not None and structure_validity(c.to_structure())]
            rdf, _ = relax_structures(valid, steps=args.relax)
            figures['mean_energy_per_atom'] = float(np.nanmean(rdf.energy_per_atom))
            try:
                hull = ConvexHull()
                e = [hull.e_above_hull(s.composition, x) for s, x in zip(valid, rdf.energy_per_atom) if np.isfinite(x)]
                figures['stable_rate'] = sum(v < 0.1 for v in e) / args.n
            except Exception as err:                                  # no hull reference data here
                print(f'stability not measured: {err}')
    seconds = time.time() - t0
    print(f'{seconds:.0f} s on {model.device}')
    for key, value in figures.items(): print(f'{key:22s} {value:.4f}' if isinstance(value, float) else f'{key:22s} {value}')
    if args.json:
        with open(args.json, 'w') as f: f.write(json.dumps({'model': args.model, 'dataset': args.dataset, 'split': args.split, 'steps': steps, 'step_lr': model.config.step_lr,
                                'charge_balanced': args.charge_balanced, **figures}, indent=2) + '\n')
    if args.record:
        from crystal_tutorial.crystal_sampling import record_measure
        import torch
        entry = record_measure(args.model, {k: v for k, v in figures.items() if isinstance(v, (int, float))},
                               'python benchmarks/eval_crystal_diffusion.py ' + ' '.join(measure_args(argv)), dataset=args.dataset, split=args.split,
                               steps=steps, step_lr=model.config.step_lr, charge_balanced=args.charge_balanced, seconds=round(seconds),
                               hardware=f'{platform.machine()} {model.device.type}, ' + (f'{args.workers} one-thread processes' if args.workers > 1 else f'{torch.get_num_threads()} thread(s)'))
        print(f"recorded in crystal_tutorial/weights/crystal_diffusion_measures.json ({entry['date']}, weights {entry['weights_sha256'][:12]}...)")


p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('model', help='a shipped model name (perov5_csp, ...) or a checkpoint path')
p.add_argument('--dataset', default='perov_5')
p.add_argument('--split', default='test')
p.add_argument('--n', type=int, default=200, help='CSP: test crystals (the first n of the split); DNG: samples and references')
p.add_argument('--k', type=int, default=1, help='CSP: samples per composition (match rate @1 and @k)')
p.add_argument('--steps', type=int, default=None, help='sampling steps (default: all training steps)')
p.add_argument('--bs', type=int, default=100, help='crystals sampled at once')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--train-split', default='train', help="DNG: the split for novelty ('none' to skip)")
p.add_argument('--relax', type=int, default=0, help='DNG: CHGNet relaxation steps per valid sample (0: no stability)')
p.add_argument('--json', default=None, help='also write the figures here')
p.add_argument('--record', action='store_true', help='append the figures to the shipped measures (shipped models only)')
p.add_argument('--save', default=None, help='DNG: also write the samples here (a torch file of dicts)')
p.add_argument('--step-lr', type=float, default=None, help="γ of the Langevin corrector (default: the model's own; 0: predictor only)")
p.add_argument('--charge-balanced', action='store_true',
               help="DNG: decode each crystal's types in proportions that pass SMACT's charge balance where its elements allow it")
p.add_argument('--workers', type=int, default=1, help='processes (one thread each) that share the measure')

if __name__ == '__main__':
    try: main()
    finally:                                  # every process leaves the group (gloo aborts a process that does not)
        import torch.distributed as dist
        if dist.is_initialized(): dist.destroy_process_group()
