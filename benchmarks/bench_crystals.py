"""Crystal data layer on this machine: load+parse times (cold and cached), memory of the parsed data, and the radius
graph's agreement with pymatgen's neighbour lists.

    python benchmarks/bench_crystals.py [--root /path/to/datasets] [--check 500] [--cutoffs 4 6] [--quick]

Reads perov_5/val, carbon_24/val and mp_mix_20/train from the local copies (`--root`, else $CRYSTAL_TUTORIAL_DATASETS,
else ../shared/datasets) and never downloads. The cache goes to a fresh temporary folder that is deleted at the end,
so that "cold" really parses every CIF, and the shared folder and data/ are left untouched.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--root', default=None, help='folder holding <name>/<split>.csv[.gz] (default: datasets_root())')
p.add_argument('--check', type=int, default=500, help='crystals per dataset for the neighbour-list check (0: all)')
p.add_argument('--cutoffs', type=float, nargs='+', default=[4.0, 6.0])
p.add_argument('--quick', action='store_true', help='first 300 rows of each file, 50 crystals checked (a smoke test)')
args = p.parse_args()

tmp = Path(tempfile.mkdtemp(prefix='bench_crystals_'))
os.environ['CRYSTAL_TUTORIAL_DATA'] = str(tmp / 'data')          # nothing is written to the project's data/

import torch  # noqa: E402

from crystal_tutorial.crystal_data import DatasetError, dataset_csv, datasets_root, # noqa: E402                                            load_csv
from crystal_tutorial.crystal_graphs import edge_mismatches

FILES = [('perov_5', 'val'), ('carbon_24', 'val'), ('mp_mix_20', 'train')]
limit = 300 if args.quick else None
n_check = 50 if args.quick else args.check
root = args.root or datasets_root()
print(f'{os.cpu_count()} CPUs visible, torch {torch.__version__} with {torch.get_num_threads()} threads; datasets from {root}; '
      f'cache in {tmp} (deleted at the end)' + ('; --quick: first 300 rows' if args.quick else ''))


def text_bytes(ds) -> int:
    "Approximate memory of the text properties: the str objects and the list slots pointing at them."
    return sum(sys.getsizeof(v) + sum(sys.getsizeof(x) for x in v) for v in ds.props.values() if isinstance(v, list))


try:
    loaded = {}
    print(f"\n{'dataset':17s} {'crystals':>8s} {'atoms':>8s} {'cold (s)':>9s} {'ms/crystal':>10s} {'cached (s)':>10s} {'speed-up':>8s}")
    for name, split in FILES:
        try: csv = dataset_csv(name, split, root=root, download=False)
        except DatasetError as e: print(f'{name} {split}: skipped ({e})'); continue
        t0 = time.perf_counter(); cold = load_csv(csv, limit=limit, cache_dir=tmp / 'cache', verbose=False); t_cold = time.perf_counter() - t0
        t0 = time.perf_counter(); warm = load_csv(csv, limit=limit, cache_dir=tmp / 'cache', verbose=False); t_warm = time.perf_counter() - t0
        assert not cold.info['from_cache'] and warm.info['from_cache'], 'the first load must parse, the second come from the cache'
        assert torch.equal(cold.frac_coords, warm.frac_coords) and torch.equal(cold.atom_types, warm.atom_types)
        loaded[f'{name} {split}'] = warm
        print(f"{name + ' ' + split:17s} {len(cold):8,d} {int(cold.num_atoms.sum()):8,d} {t_cold:9.2f} {1e3 * t_cold / len(cold):10.2f} "
              f"{t_warm:10.3f} {t_cold / t_warm:7.0f}x" + (f"  ({len(cold.info['skipped'])} rows skipped)" if cold.info['skipped'] else ''))

    if 'mp_mix_20 train' in loaded:
        mp = loaded['mp_mix_20 train']
        n_atoms = int(mp.num_atoms.sum()); cache = Path(mp.info['cache']).stat().st_size
        print(f'\nmp_mix_20 train parsed: {len(mp):,} crystals, {n_atoms:,} atoms')
        print(f'  tensors (coordinates, types, lattices, counts, numeric properties): {mp.nbytes / 2**20:.2f} MiB '
              f'({mp.nbytes / n_atoms:.0f} bytes per atom)')
        print(f'  text properties (ids, formulas, sources) as Python strings: about {text_bytes(mp) / 2**20:.2f} MiB')
        print(f'  cache file on disk: {cache / 2**20:.2f} MiB')

    print(f"\nneighbour lists vs pymatgen get_all_neighbors ({'all' if n_check == 0 else n_check} crystals per dataset, seeded sample)")
    total_bad = 0
    for key, ds in loaded.items():
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
        idx = idx if n_check == 0 else idx[:n_check]
        crystals = [ds[int(i)] for i in idx]
        for rc in args.cutoffs:
            t0 = time.perf_counter(); bad = total = 0
            for k in range(0, len(crystals), 100):                # batches of 100 crystals
                b, t = edge_mismatches(crystals[k:k + 100], rc); bad += b; total += t
            total_bad += bad
            print(f'  {key:17s} cutoff {rc:4.1f} Å: {total:9,d} pymatgen edges, {bad} mismatching ({time.perf_counter() - t0:.1f} s)')
    print(f'mismatching edges in all: {total_bad}')
    sys.exit(1 if total_bad else 0)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
