"""Speed and quality figures of `crystal_tutorial.evaluation` (issue 5, "Numbers"): printed, not asserted.

    nice -n 10 python benchmarks/bench_evaluation.py [--n-vun 1000] [--n-hull 40] [--hull-steps 100] [--n-chgnet 10] [--device cpu]

1. validity, uniqueness and novelty of 1,000 mp_mix_20 test structures against mp_mix_20 train (target: < 60 s on 2 cores);
2. the whole Perov-5 test split matched against itself (target: < 2 minutes; match rate 100%, RMSE 0);
3. CHGNet relaxation speed (structures per minute; `--device cuda` on a GPU machine);
4. E_hull validation: DFT formation energies on our hull vs MP's e_above_hull (all test structures), then CHGNet-relaxed
   energies on a random sample of `--n-hull` test structures: MAE against DFT e_above_hull, and how many known-stable
   structures (DFT e_above_hull = 0) come out below 0.1 eV/atom.
Needs the shared datasets (../shared/datasets or $CRYSTAL_TUTORIAL_DATASETS). Parsing mp_mix_20 train the first time
takes a minute or two (then cached in data/parsed); that parse is not part of the timings.
"""
import argparse
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings('ignore')

from crystal_tutorial.crystal_data import datasets_root, load_dataset
from crystal_tutorial.evaluation import (ReferenceSet, composition_validity, csp_metrics, load_structures,
                                         match_targets, novel_mask, structure_validity, unique_mask)
from crystal_tutorial.stability import ConvexHull, relax_structures


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-vun', type=int, default=1000); p.add_argument('--n-hull', type=int, default=40)
    p.add_argument('--hull-steps', type=int, default=100); p.add_argument('--n-chgnet', type=int, default=10)
    p.add_argument('--device', default='cpu'); p.add_argument('--skip', default='', help='comma list of parts to skip: vun,perov,chgnet,hull')
    a = p.parse_args(); skip = set(a.skip.split(','))
    if datasets_root() is None: raise SystemExit('needs the shared datasets (set CRYSTAL_TUTORIAL_DATASETS)')
    print(f'torch threads {torch.get_num_threads()}, device {a.device}')
    test_ds = load_dataset('mp_mix_20', 'test', download=False, verbose=False)

    if 'vun' not in skip:
        train = load_dataset('mp_mix_20', 'train', download=False, verbose=True)
        gen = load_structures(test_ds.subset(range(min(a.n_vun, len(test_ds)))))[1]
        t0 = time.perf_counter()
        ref = ReferenceSet(train)
        t_ref = time.perf_counter() - t0
        sv = np.array([structure_validity(s) for s in gen]); cv = np.array([composition_validity(s) for s in gen])
        t_val = time.perf_counter() - t0 - t_ref
        u = unique_mask(gen); t_u = time.perf_counter() - t0 - t_ref - t_val
        n = novel_mask(gen, ref); t_all = time.perf_counter() - t0
        print(f'\n[1] V/U/N of {len(gen)} mp_mix_20 test structures vs {len(train):,} train: {t_all:.1f} s '
              f'(index {t_ref:.1f} s, validity {t_val:.1f} s, uniqueness {t_u:.1f} s, novelty {t_all - t_ref - t_val - t_u:.1f} s)')
        print(f'    struct valid {sv.mean():.1%}, comp valid {cv.mean():.1%}, valid {(sv & cv).mean():.1%}, unique {u.mean():.1%}, novel {n.mean():.1%}')

    if 'perov' not in skip:
        perov = load_structures(load_dataset('perov_5', 'test', download=False, verbose=False))[1]
        t0 = time.perf_counter()
        m = csp_metrics(match_targets([[s] for s in perov], perov))
        print(f'\n[2] Perov-5 test ({len(perov):,}) against itself: {time.perf_counter() - t0:.1f} s, '
              f"match rate {m['match_rate@1']:.2%}, RMSE {m['rmse@1']:.2e}")

    if 'chgnet' not in skip:
        gen = load_structures(test_ds.subset(range(100, 100 + a.n_chgnet)))[1]
        relax_structures(gen[:1], steps=2, device=a.device)                  # load the model, warm up
        t0 = time.perf_counter()
        df, _ = relax_structures(gen, steps=100, fmax=0.1, device=a.device)
        dt = time.perf_counter() - t0
        print(f'\n[3] CHGNet on {a.device}: {len(gen)} structures ({np.mean([len(s) for s in gen]):.1f} atoms on average), up to 100 FIRE steps, '
              f'fmax 0.1: {dt:.1f} s = {60 * len(gen) / dt:.1f} structures/min ({df.steps.sum() / dt:.1f} steps/s, {df.converged.mean():.0%} converged)')

    if 'hull' not in skip:
        hull = ConvexHull()
        structures = load_structures(test_ds)[1]
        ef, dft = test_ds.props['formation_energy_per_atom'].numpy(), test_ds.props['e_above_hull'].numpy()
        ours = np.array([hull.e_above_hull_formation(s.composition, e) if np.isfinite(e) else np.nan for s, e in zip(structures, ef)])
        ok = np.isfinite(ours) & np.isfinite(dft)
        err = np.abs(ours - dft)[ok]
        print(f'\n[4a] DFT formation energies on our hull, {ok.sum():,} test structures: MAE {err.mean():.4f} eV/atom, '
              f'median {np.median(err):.4f}, within 0.01: {(err < 0.01).mean():.1%}, within 0.05: {(err < 0.05).mean():.1%}')
        rng = np.random.default_rng(0)
        idx = rng.choice(np.flatnonzero(ok), size=min(a.n_hull, ok.sum()), replace=False)
        t0 = time.perf_counter()
        df, _ = relax_structures([structures[i] for i in idx], steps=a.hull_steps, fmax=0.1, device=a.device)
        dt = time.perf_counter() - t0
        chg = np.array([hull.e_above_hull(structures[i].composition, e) for i, e in zip(idx, df.energy_per_atom)])
        d = dft[idx]; good = np.isfinite(chg)
        e = np.abs(chg - d)[good]
        stable = good & (d <= 1e-6)
        print(f'[4b] CHGNet E_hull on a random sample of {len(idx)} test structures (seed 0, {a.hull_steps} steps, {dt:.0f} s): '
              f'MAE {e.mean():.3f} eV/atom (median {np.median(e):.3f}); known stable (DFT 0): {(chg[stable] < 0.1).sum()} of {stable.sum()} below 0.1 eV/atom; '
              f'all: {(chg[good] < 0.1).mean():.0%} below 0.1 (DFT: {(d[good] < 0.1).mean():.0%}); bias {np.mean((chg - d)[good]):+.3f}')


if __name__ == '__main__':
    main()
