"""Crystals that the sampler draws for the shipped models with fixed seeds, saved as a reference (tests/data/sampler_reference.npz).

tests/test_sampler_reference.py checks that the sampler still draws them (to 1e-5): a change that only restructures the
sampler's code must not change what it samples. Run this script again only when a change of what the sampler draws is meant.

    python scripts/sampler_reference.py [--out tests/data/sampler_reference.npz]
"""
import argparse, warnings
import numpy as np, torch

from crystal_tutorial.chameleon import Chameleon
from crystal_tutorial.crystal_diffusion import load_crystal_diffusion
from crystal_tutorial.crystal_sampling import (AllowedElements, ChargeBalance, RequiredElements,
                                               sample_crystals)
from crystal_tutorial.symmetry import sample_symmetric

STEPS = 8


def _gen(seed): return torch.Generator().manual_seed(seed)


def cases():
    "name -> a function returning a list of crystals (Crystal or ase.Atoms)."
    perov, csp = load_crystal_diffusion('perov5_csp'), load_crystal_diffusion('mp_mix_20_csp')
    dng, carbon = load_crystal_diffusion('mp_mix_20_dng'), load_crystal_diffusion('carbon24_dng')
    composition, general = Chameleon.load_composition_model(), Chameleon.load_general_text_model()
    return {
        'perov5_csp': lambda: sample_crystals(perov, compositions=['SrTiO3', 'BaZrO3', 'CaTiO3'], steps=STEPS, generator=_gen(0)),
        'mp_csp': lambda: sample_crystals(csp, compositions=['NaCl', 'Ga2Te3', 'TiO2'], steps=STEPS, generator=_gen(1)),
        'mp_dng': lambda: sample_crystals(dng, n=4, steps=STEPS, generator=_gen(2)),
        'mp_dng_elements': lambda: sample_crystals(dng, num_atoms=[6, 8, 8, 9], steps=STEPS, generator=_gen(3),
                                                   constraints=[AllowedElements([22, 8, 16]), RequiredElements([22, 8, 16]), ChargeBalance()]),
        'mp_dng_per_crystal': lambda: sample_crystals(dng, num_atoms=[4, 6], steps=STEPS, generator=_gen(4), step_lr=0.0,
                                                      constraints=[AllowedElements([[11, 17], None]), RequiredElements([[11, 17], None])]),
        'carbon_dng': lambda: sample_crystals(carbon, n=3, steps=STEPS, generator=_gen(5)),
        'mp_dng_cubic': lambda: sample_symmetric(dng, 'cubic', 3, seed=6, steps=STEPS),
        'mp_dng_225_balanced': lambda: sample_symmetric(dng, 225, 2, seed=7, steps=STEPS,
                                                        constraints=[AllowedElements([11, 17]), RequiredElements([11, 17]), ChargeBalance()]),
        'composition_elements': lambda: composition.sample_batch(['Ti O S', 'Ti O S', 'Li Fe P O'], [8, 9, 14], steps=STEPS, seed=8),
        'composition_formula': lambda: composition.sample_batch(['SrTiO3', 'Ga2Te3'], [10, 5], steps=STEPS, seed=9, guidance_scale=2.0),
        'general_system': lambda: general.sample_batch(['Cubic crystal structure of NaCl', 'A tetragonal oxide of titanium'], [8, 6],
                                                       steps=STEPS, seed=10),
        'general_free': lambda: general.sample_batch(['A semiconducting material', 'Hexagonal crystal structure of ZnO'], [4, 4],
                                                     steps=STEPS, seed=11, charge_balanced=False, follow_formula=False),
    }


def arrays(crystals) -> dict:
    "lattice [B, 3, 3], frac_coords [N, 3], atom_types [N], num_atoms [B] of a list of Crystals or ase.Atoms."
    rows = []
    for c in crystals:
        if hasattr(c, 'get_scaled_positions'): rows.append((np.array(c.cell), c.get_scaled_positions(wrap=False), c.numbers))
        else: rows.append((c.lattice.numpy(), c.frac_coords.numpy(), c.atom_types.numpy()))
    return {'lattice': np.stack([r[0] for r in rows]), 'frac_coords': np.concatenate([r[1] for r in rows]),
            'atom_types': np.concatenate([r[2] for r in rows]), 'num_atoms': np.array([len(r[2]) for r in rows])}


def draw_all() -> dict:
    "Every case's arrays, keyed 'case/array'."
    torch.set_num_threads(1)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name, draw in cases().items():
            out.update({f'{name}/{k}': v for k, v in arrays(draw()).items()})
    return out


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='tests/data/sampler_reference.npz')
    args = p.parse_args()
    ref = draw_all()
    np.savez_compressed(args.out, **ref)
    print(f"{len(ref) // 4} cases, {sum(v.nbytes for v in ref.values())} bytes -> {args.out}")
