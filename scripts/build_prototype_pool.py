"""Build a prototype pool for structure prediction (chapter 15) from training splits, leaving out every test crystal.

    python scripts/build_prototype_pool.py --name mp --out crystal_tutorial/weights/prototype_pool_mp.npz
    python scripts/build_prototype_pool.py --name perov_5 --out crystal_tutorial/weights/prototype_pool_perov_5.npz

'mp': mp_mix_20 `train` and MPTS-52 `val` (cells of up to 52 atoms), without any crystal whose material_id is in
mp_mix_20 `val` or `test`, MPTS-52 `test` or Chemeleon's MP-40 test files. 'perov_5': Perov-5 `val` (the split the
perov5_csp model was trained on). The files hold lattices, fractional coordinates, elements, material ids, space groups,
Wyckoff letters and energies above hull (no test crystal: asserted here and in the tests).
"""
import argparse
import time

import pandas as pd

from crystal_tutorial.crystal_data import dataset_csv, datasets_root, load_dataset
from crystal_tutorial.structure_prediction import PrototypePool

SOURCES = {'mp': [('mp_mix_20', 'train'), ('mpts_52', 'val')], 'perov_5': [('perov_5', 'val')]}
HELD_OUT = {'mp': [('mp_mix_20', 'val'), ('mp_mix_20', 'test'), ('mpts_52', 'test'), ('mp_40_chemeleon', 'test'),
                   ('mp_40_chemeleon', 'mineral/test'), ('mp_40_chemeleon', 'random_split/test')],
            'perov_5': [('perov_5', 'test')]}


def held_out_ids(name: str, root=None) -> set:
    "Material ids of every test (and validation) crystal that must never enter the pool `name`."
    ids = set()
    for dataset, split in HELD_OUT[name]:
        ids |= set(pd.read_csv(dataset_csv(dataset, split, root, download=False), usecols=['material_id']).material_id.astype(str))
    return ids


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--name', choices=sorted(SOURCES), default='mp')
    p.add_argument('--root', default=None, help='folder holding the datasets (default: found automatically)')
    p.add_argument('--out', required=True)
    a = p.parse_args(argv)
    t0, root = time.time(), a.root or datasets_root()
    exclude = held_out_ids(a.name, root)
    pools = [PrototypePool.from_dataset(load_dataset(d, s, root=root), exclude=exclude, name=f'{d} {s}') for d, s in SOURCES[a.name]]
    pool = PrototypePool.concat(pools, name=a.name)
    assert not set(pool.material_ids) & exclude, 'a held-out crystal entered the pool'
    path = pool.save(a.out, sources=[f'{d}/{s}' for d, s in SOURCES[a.name]], held_out=[f'{d}/{s}' for d, s in HELD_OUT[a.name]],
                     n_held_out_ids=len(exclude))
    print(f'{pool} in {time.time() - t0:.0f} s -> {path} ({path.stat().st_size / 1e6:.2f} MB)')


if __name__ == '__main__':
    main()
