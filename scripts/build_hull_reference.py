"""Build the shipped convex-hull reference (chapter 09) from the datasets, leaving out every held-out crystal.

    python scripts/build_hull_reference.py --out crystal_tutorial/weights/mp_hull_reference.npz

Reads <datasets>/mp_hull: the 89 MP elemental reference entries (matbench-discovery) and the LeMat-GenBench MP-20
hull tables (`lemat_genbench_mp20_hulls/*_above_hull_dataset.parquet`), takes each MP-20 phase once with its MP
formation energy per atom, and drops every phase whose material_id is in mp_mix_20 `val`/`test`, MPTS-52 `test` or
Chemeleon's MP-40 test files (the held-out ids of `scripts/build_prototype_pool.py`). The .npz holds plain arrays only
(read with `allow_pickle=False`): per phase its material id, formula (element counts of the cell) and formation energy
per atom (float32), plus the elemental reference energies per atom. `--compare N` measures the shipped hull against the
full one on N mp_mix_20 train crystals.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_prototype_pool import (HELD_OUT, held_out_ids)  # noqa: E402  the same held-out ids as the prototype pool

from crystal_tutorial.crystal_data import datasets_root  # noqa: E402
from crystal_tutorial.stability import HULL_FORMAT, ConvexHull, _MP20_HULLS, _MP_REFERENCES  # noqa: E402


def build(root, exclude: set) -> dict:
    "The arrays of the shipped hull reference: the full hull of `root`/mp_hull without the phases in `exclude`."
    from collections import Counter
    from pymatgen.core import Composition
    full = ConvexHull(Path(root) / 'mp_hull')
    t = full.table[~full.table.material_id.astype(str).isin(exclude)]
    formulas = [Composition(dict(Counter(s))).formula.replace(' ', '') for s in t.species_at_sites]
    els = sorted(full.mu)
    meta = dict(sources=[f'mp_hull/{_MP_REFERENCES}', f'mp_hull/{_MP20_HULLS}/*_above_hull_dataset.parquet'],
                held_out=[f'{d}/{s}' for d, s in HELD_OUT['mp']], n_held_out_ids=len(exclude),
                n_full=len(full.table), n_dropped=len(full.table) - len(t))
    return dict(format=np.array(HULL_FORMAT), material_ids=t.material_id.astype(str).to_numpy().astype('U'),
                formulas=np.array(formulas, dtype='U'),
                formation_energy_per_atom=t.formation_energy_per_atom.to_numpy().astype(np.float32),
                elements=np.array(els, dtype='U'), mu=np.array([full.mu[e] for e in els], dtype=np.float64),
                meta=np.array(json.dumps(meta))), full


def compare(full: ConvexHull, shipped: ConvexHull, root, n: int, seed: int = 0) -> dict:
    "e_above_hull of `n` mp_mix_20 train crystals' MP formation energies on both hulls: the absolute differences."
    import pandas as pd
    from crystal_tutorial.crystal_data import dataset_csv
    df = pd.read_csv(dataset_csv('mp_mix_20', 'train', root, download=False),
                     usecols=['material_id', 'pretty_formula', 'formation_energy_per_atom'])
    df = df[np.isfinite(df.formation_energy_per_atom)].sample(n, random_state=seed)
    a = np.array([full.e_above_hull_formation(f, e) for f, e in zip(df.pretty_formula, df.formation_energy_per_atom)])
    b = np.array([shipped.e_above_hull_formation(f, e) for f, e in zip(df.pretty_formula, df.formation_energy_per_atom)])
    kept = df.material_id.isin(set(shipped.table.material_id)).to_numpy()   # not held out by another test split
    out = {}
    for name, m in [('all', np.isfinite(a) & np.isfinite(b)), ('on_shipped_hull', np.isfinite(a) & np.isfinite(b) & kept)]:
        d = np.abs(a[m] - b[m])
        out[name] = dict(n=int(m.sum()), mean_abs=round(float(d.mean()), 5), max_abs=round(float(d.max()), 5),
                         n_over_1e4=int((d > 1e-4).sum()), stable_full=round(float((a[m] < 0.1).mean()), 3),
                         stable_shipped=round(float((b[m] < 0.1).mean()), 3))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', default=None, help='folder holding the datasets (default: found automatically)')
    p.add_argument('--out', required=True)
    p.add_argument('--compare', type=int, default=0, metavar='N', help='measure against the full hull on N crystals')
    a = p.parse_args(argv)
    t0, root = time.time(), a.root or datasets_root()
    if root is None: sys.exit('no datasets folder: set CRYSTAL_TUTORIAL_DATASETS or give --root')
    exclude = held_out_ids('mp', root)
    arrays, full = build(root, exclude)
    assert not set(arrays['material_ids'].tolist()) & exclude, 'a held-out crystal entered the hull reference'
    out = Path(a.out)
    with open(out, 'wb') as f: np.savez_compressed(f, **arrays)
    meta = json.loads(str(arrays['meta']))
    print(f"{len(arrays['formulas']):,} phases ({meta['n_dropped']:,} of {meta['n_full']:,} dropped as held out; "
          f"{len(exclude):,} held-out ids), {len(arrays['mu'])} elemental references in {time.time() - t0:.0f} s "
          f"-> {out} ({out.stat().st_size / 1e6:.2f} MB)")
    shipped = ConvexHull(out)
    # float32 formation energies: the largest change of a phase's e_above_hull against its float64 value
    e64 = full.table.set_index('material_id').formation_energy_per_atom
    err = np.abs(arrays['formation_energy_per_atom'].astype(np.float64) - e64.loc[arrays['material_ids']].to_numpy())
    print(f'float32 rounding of formation energies: max {err.max():.2e} eV/atom (bounds the change of e_above_hull)')
    if a.compare:
        print('train crystals, shipped vs full hull:', compare(full, shipped, root, a.compare))


if __name__ == '__main__':
    main()
