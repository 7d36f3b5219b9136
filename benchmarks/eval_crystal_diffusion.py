"""Quality of a trained crystal diffusion model for structure prediction (CSP): match rate and RMSE on a test split.

    python benchmarks/eval_crystal_diffusion.py perov5_csp --dataset perov_5 --split test --n 200 --steps 1000 [--k 1]

Samples one structure (or k) per test composition with `sample_crystals`, matches it against the known structure with
pymatgen's StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3) as DiffCSP does, and prints the match rate, the RMSE
(normalised RMS distance averaged over matched pairs) and the sampling speed. The first `--n` crystals of the split.
"""
import argparse
import time

import torch

from crystal_tutorial.crystal_diffusion import load_crystal_diffusion, sample_crystals
from crystal_tutorial.crystals import load_dataset
from crystal_tutorial.evaluation import csp_metrics, match_targets

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('model', help='a shipped model name (perov5_csp, ...) or a checkpoint path')
p.add_argument('--dataset', default='perov_5')
p.add_argument('--split', default='test')
p.add_argument('--n', type=int, default=200, help='test crystals (the first n of the split)')
p.add_argument('--k', type=int, default=1, help='samples per composition (match rate @1 and @k)')
p.add_argument('--steps', type=int, default=None, help='sampling steps (default: all training steps)')
p.add_argument('--bs', type=int, default=100, help='crystals sampled at once')
p.add_argument('--seed', type=int, default=0)
args = p.parse_args()

model = load_crystal_diffusion(args.model)
ds = load_dataset(args.dataset, args.split)
targets = [ds[i] for i in range(min(args.n, len(ds)))]
g = torch.Generator().manual_seed(args.seed)
t0 = time.time()
candidates = [[] for _ in targets]
for _ in range(args.k):
    for start in range(0, len(targets), args.bs):
        chunk = targets[start:start + args.bs]
        for j, c in enumerate(sample_crystals(model, compositions=chunk, steps=args.steps, generator=g)):
            candidates[start + j].append(None if c is None else c.to_structure())
seconds = time.time() - t0
n_samples = len(targets) * args.k
metrics = csp_metrics(match_targets(candidates, [t.to_structure() for t in targets]))
print(f'{args.model} on {args.dataset}/{args.split}, first {len(targets)} crystals, k={args.k}, steps={args.steps or model.config.n_steps}')
print(f'sampling: {n_samples} crystals in {seconds:.0f} s ({n_samples / seconds:.2f} crystals/s) on {model.device}')
for key, value in metrics.items(): print(f'{key:14s} {value:.4f}')
