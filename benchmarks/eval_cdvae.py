"""The shipped CDVAE (notebook 17) measured the way chapter 11's Carbon-24 diffusion model was: DNG samples and
reconstructions against Carbon-24 `test`.

    python benchmarks/eval_cdvae.py --n 200 --n-recon 200 --record

DNG: `--n` samples from z ~ N(0, I), measured with `dng_metrics` against the first `--n` test crystals (structural and
compositional validity, uniqueness, coverage, Wasserstein distances; no novelty, as for the diffusion model: every
Carbon-24 sample has the training formula). Reconstruction: the first `--n-recon` test crystals encoded (z = μ) and
decoded, matched with chapter 08's StructureMatcher (match rate, RMSE). With --record the figures are appended to
crystal_tutorial/weights/cdvae_measures.json with the weights' SHA-256.
"""
import argparse
import json
import time

import torch

from crystal_tutorial.cdvae import SHIPPED_CDVAES, load_cdvae, reconstruct, sample
from crystal_tutorial.core import WEIGHTS_DIR
from crystal_tutorial.evaluation import dng_metrics
from crystal_tutorial.crystal_data import load_dataset
from crystal_tutorial.evaluation import csp_metrics, make_matcher, match_targets
from _record import append_measure

MEASURES = WEIGHTS_DIR / 'cdvae_measures.json'

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--name', default='carbon24', choices=sorted(SHIPPED_CDVAES))
p.add_argument('--n', type=int, default=200, help='DNG samples, and test crystals they are measured against')
p.add_argument('--n-recon', type=int, default=200, help='test crystals to reconstruct')
p.add_argument('--bs', type=int, default=100)
p.add_argument('--seed', type=int, default=0)
p.add_argument('--threads', type=int, default=1)
p.add_argument('--record', action='store_true')


def in_batches(f, n: int, bs: int) -> tuple:
    "f(start, stop) over [0, n) in batches, concatenated, and the seconds per item."
    t0, out = time.time(), []
    for start in range(0, n, bs): out += f(start, min(n, start + bs))
    return out, (time.time() - t0) / max(n, 1)


def main():
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, dataset = load_cdvae(args.name, device='cpu'), SHIPPED_CDVAES[args.name][1]
    test = load_dataset(dataset, 'test', verbose=False)
    g = torch.Generator().manual_seed(args.seed)
    samples, sec = in_batches(lambda a, b: sample(model, b - a, generator=g), args.n, args.bs)
    figures = {**dng_metrics(samples, [test[i] for i in range(min(args.n, len(test)))]), 's_per_sample': sec}
    targets = test.subset(range(min(args.n_recon, len(test))))
    recon, sec = in_batches(lambda a, b: reconstruct(model, targets.batch(torch.arange(a, b)), generator=g),
                            len(targets), args.bs)
    rec = csp_metrics(match_targets([[None if c is None else c.to_structure()] for c in recon],
                                    [c.to_structure() for c in targets], make_matcher()))
    figures.update({'recon_n': len(targets), 'recon_match_rate': rec['match_rate@1'], 'recon_rmse': rec['rmse@1'],
                    's_per_reconstruction': sec})
    print(json.dumps(figures, indent=1))
    if args.record: append_measure(MEASURES, args.name, WEIGHTS_DIR / SHIPPED_CDVAES[args.name][0], figures=figures)


if __name__ == '__main__':
    main()
