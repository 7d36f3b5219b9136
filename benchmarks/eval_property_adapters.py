"""How far the band-gap adapters (notebook 18) move the band gaps of generated crystals.

    python benchmarks/eval_property_adapters.py --n 200 --steps 200 --record

For each asked band gap and guidance scale, N crystals are sampled from the adapted model (and N from the
pretrained model, unasked); the composition judge shipped with the adapters reads the band gap of each structurally
valid one. Prints a table (mean and median judged gap, share above 0.5 eV, validity, seconds per crystal) and with
--record appends it to crystal_tutorial/weights/property_adapter_measures.json with the adapters' SHA-256.
"""
import argparse
import time

import numpy as np
import torch

from crystal_tutorial.adapters import (SHIPPED_ADAPTERS, judge_samples, load_adapted, load_judge,
                                       sample_with_property)
from crystal_tutorial.core import WEIGHTS_DIR
from crystal_tutorial.crystal_sampling import sample_crystals
from _record import append_measure

MEASURES = WEIGHTS_DIR / 'property_adapter_measures.json'

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--name', default='mp_mix_20_dng_band_gap', choices=sorted(SHIPPED_ADAPTERS))
p.add_argument('--targets', default='0,1,2,4', help='asked band gaps (eV), comma-separated')
p.add_argument('--guidance', default='1,2', help='guidance scales w, comma-separated')
p.add_argument('--n', type=int, default=200, help='crystals per asked value')
p.add_argument('--steps', type=int, default=200)
p.add_argument('--bs', type=int, default=50)
p.add_argument('--seed', type=int, default=0)
p.add_argument('--threads', type=int, default=1)
p.add_argument('--record', action='store_true')


def draw(sample, n, bs):
    "n crystals in batches of bs, and the seconds per crystal."
    t0, out = time.time(), []
    for start in range(0, n, bs): out += sample(min(bs, n - start))
    return out, (time.time() - t0) / n


def row(judge, crystals, seconds, **key) -> dict:
    j = judge_samples(judge, crystals)
    v = j['values']
    return {**key, 'n': len(crystals), 'valid': j['valid'], 'charge_balanced': j['charge_balanced'],
            'gap_mean': float(v.mean()), 'gap_median': float(np.median(v)), 'gap_above_0.5': float((v > 0.5).mean()),
            's_per_crystal': seconds}


def main():
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, judge = load_adapted(args.name, device='cpu'), load_judge(args.name)
    g = torch.Generator().manual_seed(args.seed)
    settings = dict(steps=args.steps, step_lr=0, generator=g)
    crystals, sec = draw(lambda k: sample_crystals(model, n=k, **settings), args.n, args.bs)
    rows = [row(judge, crystals, sec, target=None, guidance=0.0)]
    print(rows[-1], flush=True)
    for w in map(float, args.guidance.split(',')):
        for y in map(float, args.targets.split(',')):
            crystals, sec = draw(lambda k: sample_with_property(model, y, k, guidance_scale=w, **settings),
                                 args.n, args.bs)
            rows.append(row(judge, crystals, sec, target=y, guidance=w))
            print(rows[-1], flush=True)
    if args.record: append_measure(MEASURES, args.name, WEIGHTS_DIR / SHIPPED_ADAPTERS[args.name], rows=rows)


if __name__ == '__main__':
    main()
