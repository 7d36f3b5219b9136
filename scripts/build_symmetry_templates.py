"""Build the pool of symmetry templates (chapter 14) from a dataset split and save it.

    python scripts/build_symmetry_templates.py --dataset mp_mix_20 --split train \
        --out crystal_tutorial/weights/symmetry_templates_mp_mix_20.npz

    python scripts/build_symmetry_templates.py --from-pool mp \
        --out crystal_tutorial/weights/symmetry_templates_mp.npz

`--from-pool` takes the crystals of a shipped prototype pool (chapter 15: mp_mix_20 `train` and MPTS-52 `val`, cells up
to 52 atoms, every held-out test crystal already left out) instead of a dataset split.

Only space-group operations and the atom permutations they perform are kept: no coordinates, lattices or elements.
"""
import argparse
import collections
import time

from crystal_tutorial.crystal_data import load_dataset
from crystal_tutorial.symmetry import SymmetryTemplates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dataset', default='mp_mix_20')
    p.add_argument('--split', default='train')
    p.add_argument('--root', default=None, help='folder holding the datasets (default: found automatically)')
    p.add_argument('--symprec', type=float, default=0.1, help='spglib tolerance in Å')
    p.add_argument('--limit', type=int, default=None, help='only the first N crystals (for a quick try)')
    p.add_argument('--from-pool', default=None, help="a shipped prototype pool ('mp') instead of --dataset/--split")
    p.add_argument('--out', required=True)
    a = p.parse_args(argv)
    if a.from_pool:
        from crystal_tutorial.crystals import Crystal
        from crystal_tutorial.structure_prediction import load_prototype_pool
        protos = load_prototype_pool(a.from_pool)
        n = len(protos) if a.limit is None else min(a.limit, len(protos))
        ds, name = [Crystal.from_structure(protos.structure(i)) for i in range(n)], f'prototype pool {a.from_pool}'
    else:
        ds = load_dataset(a.dataset, a.split, root=a.root, limit=a.limit)
        name = f'{a.dataset} {a.split}'
    t0 = time.time()
    pool = SymmetryTemplates.from_crystals(ds, symprec=a.symprec, name=name)
    path = pool.save(a.out)
    by_system = collections.Counter()
    for s, n in zip(pool.systems, pool.counts): by_system[str(s)] += int(n)
    print(f'{pool} in {time.time() - t0:.0f} s -> {path} ({path.stat().st_size / 1e6:.2f} MB)')
    print('crystals per crystal system:', dict(sorted(by_system.items(), key=lambda kv: -kv[1])))


if __name__ == '__main__':
    main()
