"""Quality and speed of the shipped Chameleon models on prompts they never saw (mp_mix_20 test compositions not in train).

    python benchmarks/eval_chameleon.py --n-prompts 50 --n-per 4 --steps 1000 --scales 0 1 2 4

Composition model: the prompt is the element list of a held-out test crystal ("Ti O S"), n_atoms its cell size. For each
guidance scale (types not restricted, so that guidance alone is measured), and twice more at --restricted-scale (default 1)
with exactly the prompt's elements (others masked, each at least once): with the proportions left to the model, and charge-balanced
as `sample` does by default (SMACT, where the elements allow), and once more drawing crystals with overlapping atoms again
(`--retries`, as `sample` does): prompt adherence (set of elements equal to the prompt's), structural and
compositional validity and uniqueness (chapter 08), and crystals sampled per second.
General-text model: the held-out sentence "{System} crystal structure of {formula} compound" for the same crystals;
crystal-system adherence (spglib, symprec 0.1) besides the same measures: for each guidance scale inside a symmetry template
of the asked system (chapter 14, `symmetry='auto'` as `sample` does), once more with the redraws (`--retries`), and once
without templates (`symmetry=None`: the network alone). Needs the local datasets (mp_mix_20).
"""
import argparse
import json
import time

import numpy as np
import torch

from crystal_tutorial.chameleon import Chameleon, prompt_elements
from crystal_tutorial.adherence import (crystal_system_of, generation_summary, held_out_crystals,
                                        prompt_adherence, sample_prompts)
from crystal_tutorial.texts import crystal_facts, fill_template
from crystal_tutorial.crystal_data import space_group_numbers
from crystal_tutorial.crystal_data import load_dataset

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--n-prompts', type=int, default=50)
p.add_argument('--n-per', type=int, default=4, help='samples per prompt')
p.add_argument('--steps', type=int, default=None, help='denoising steps (default: all 1000)')
p.add_argument('--scales', type=float, nargs='*', default=[0, 1, 2, 4], help='guidance scales of the unrestricted runs (none: only the restricted runs)')
p.add_argument("--restricted-scale", type=float, default=1.0, help="guidance scale of the run with types restricted to the prompt elements")
p.add_argument('--retries', type=int, default=2, help="a last restricted, balanced run that draws crystals with overlapping atoms again up to this many times, as `sample` does (0: skip it)")
p.add_argument('--step-lr', type=float, default=None, help="the corrector's γ for every run (default: each model's own; 0: predictor only)")
p.add_argument('--models', nargs='+', default=['composition', 'general'])
p.add_argument('--device', default=None)
p.add_argument('--json', default=None, help='also write the results here')
p.add_argument('--weights', nargs='*', default=[], metavar='KIND=PATH',
               help='a checkpoint instead of the shipped model of that kind, e.g. general=data/runs/chameleon_general_tuned.pt')
args = p.parse_args()
weights = dict(w.split('=', 1) for w in args.weights if '=' in w)
if len(weights) != len(args.weights) or set(weights) - set(args.models):
    p.error(f'--weights takes KIND=PATH with KIND among --models ({", ".join(args.models)}), got {args.weights}')

test_ds = load_dataset('mp_mix_20', 'test')
results = {}
t_load = time.time()
models = {k: Chameleon.load(weights.get(k, k), device=args.device) for k in args.models}
print(f"loaded {', '.join(args.models)} in {time.time() - t_load:.1f} s; {torch.get_num_threads()} threads, device {next(iter(models.values())).device}")
held_out = held_out_crystals(load_dataset('mp_mix_20', 'train'), test_ds, args.n_prompts, 20)
cells = [c.num_atoms for c in held_out]
n = len(held_out) * args.n_per
print(f'{len(held_out)} held-out compositions × {args.n_per} samples = {n} per setting; {args.steps or 1000} steps; corrector γ '
      + ('each model\'s own: ' + ', '.join(f'{k} {m.diffusion.config.step_lr:g}' for k, m in models.items()) if args.step_lr is None else f'{args.step_lr:g}'))


def row(per_prompt, seconds, **extra):
    s = generation_summary([a for g in per_prompt for a in g], n_requested=n)
    return {**extra, **{k: round(s[k], 4) for k in ('struct_valid', 'comp_valid', 'unique')}, 'crystals_per_s': round(n / seconds, 2)}


if 'composition' in models:
    prompts = [crystal_facts(c)['elements'] for c in held_out]
    rows = []
    settings = ([(w, False, False, 0) for w in args.scales] + [(args.restricted_scale, True, False, 0), (args.restricted_scale, True, True, 0)]
                + [(args.restricted_scale, True, True, args.retries)] * (args.retries > 0))
    for w, restrict, balance, retries in settings:
        t0 = time.time()
        per = sample_prompts(models['composition'], prompts, cells, args.n_per, guidance_scale=w, steps=args.steps, seed=0,
                             restrict_elements=restrict, charge_balanced=balance, retries=retries, step_lr=args.step_lr)
        sec = time.time() - t0
        adh = sum(prompt_adherence(g, prompt_elements(q)) * len(g) for g, q in zip(per, prompts) if g) / n
        rows.append(row(per, sec, guidance=w, restricted=restrict, charge_balanced=balance, retries=retries, prompt_adherence=round(adh, 4)))
        print('composition', rows[-1], flush=True)
    results['composition'] = rows

if 'general' in models:
    sg = space_group_numbers(test_ds)
    facts = {test_ds[i].formula: crystal_facts(test_ds[i], int(sg[i])) for i in range(len(test_ds))}
    fs = [facts[c.formula] for c in held_out]
    prompts = [fill_template('chemeleon', f) for f in fs]
    rows = []
    settings = ([(w, 'auto', 0) for w in args.scales] + [(args.restricted_scale, 'auto', args.retries)] * (args.retries > 0)
                + [(args.restricted_scale, None, 0)])
    for w, symmetry, retries in settings:
        t0 = time.time()
        per = sample_prompts(models['general'], prompts, cells, args.n_per, guidance_scale=w, steps=args.steps, seed=0, symmetry=symmetry, retries=retries,
                             step_lr=args.step_lr)
        sec = time.time() - t0
        hits = sum(crystal_system_of(a) == f['system'] for g, f in zip(per, fs) for a in g)
        elem = sum(prompt_adherence(g, prompt_elements(q)) * len(g) for g, q in zip(per, prompts) if g) / n
        rows.append(row(per, sec, guidance=w, symmetry=symmetry or 'none', retries=retries, system_adherence=round(hits / n, 4), element_adherence=round(elem, 4)))
        print('general', rows[-1], flush=True)
    results['general'] = rows
    print('asked-for systems:', {s: sum(f['system'] == s for f in fs) for s in sorted({f['system'] for f in fs})})

if args.json:
    with open(args.json, 'w') as f: json.dump({'args': vars(args), **results}, f, indent=2)
