"""How many denoising steps `Chameleon.sample` needs: quality and time against steps, for both shipped models.

    python benchmarks/bench_sampling_steps.py --n-prompts 30 --n-per 4 --steps 20 50 100 200 1000 --record

Prompts as in `eval_chameleon.py`: the first `--n-prompts` mp_mix_20 test crystals whose reduced formula is not in
train, each with its own cell size; the composition model gets the element list ("Ti O S"), the general-text model
the held-out sentence "{System} crystal structure of {formula} compound". Every setting samples with `sample`'s
defaults (exactly the prompt's elements, charge balance, the formula and symmetry constraints, up to 4 redraws of
crystals with overlapping atoms, predictor only) and the diffusion route, so that the steps are what changes; the same seed for every setting.
Measured: structural and compositional validity and uniqueness (chapter 08), prompt adherence, crystal-system
adherence (general model), the CHGNet energy per atom of the crystals as generated (no relaxation: lower is closer to
a real solid) as a median and as the per-prompt lowest energy compared with the most steps' on the same prompt, and
crystals per second. `--record` writes the table to crystal_tutorial/weights/sampling_steps_measures.json.
"""
import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from crystal_tutorial.chameleon import Chameleon, prompt_elements
from crystal_tutorial.adherence import (crystal_system_of, generation_summary, held_out_crystals,
                                        prompt_adherence, sample_prompts)
from crystal_tutorial.texts import crystal_facts, fill_template
from crystal_tutorial.core import write_text_atomic
from crystal_tutorial.crystal_data import load_dataset, space_group_numbers
from crystal_tutorial.evaluation import to_structure
from crystal_tutorial.stability import chgnet_energies

MEASURES = Path(__file__).resolve().parents[1] / 'crystal_tutorial' / 'weights' / 'sampling_steps_measures.json'


def prompts_for(kind: str, held_out, test_ds) -> tuple[list, list | None]:
    "The held-out prompts of one model kind, and the crystal systems they ask for (general model)."
    if kind == 'composition': return [crystal_facts(c)['elements'] for c in held_out], None
    sg = space_group_numbers(test_ds)
    facts = {test_ds[i].formula: crystal_facts(test_ds[i], int(sg[i])) for i in range(len(test_ds))}
    fs = [facts[c.formula] for c in held_out]
    return [fill_template('chemeleon', f) for f in fs], [f['system'] for f in fs]


def measure(model, prompts, systems, cells, n_per: int, steps: int) -> tuple[dict, list]:
    "One row of the table, and each prompt's lowest energy per atom (NaN where nothing came out)."
    t0 = time.time()
    per = sample_prompts(model, prompts, cells, n_per, steps=steps, seed=0, route='diffusion', retries=4)
    seconds, n = time.time() - t0, len(prompts) * n_per
    flat = [a for g in per for a in g]
    energies = chgnet_energies([to_structure(a) for a in flat])
    best, k = [], 0
    for g in per:
        best.append(float(np.nanmin(energies[k:k + len(g)])) if len(g) and np.isfinite(energies[k:k + len(g)]).any()
                    else float('nan'))
        k += len(g)
    s = generation_summary(flat, n_requested=n)
    row = {'steps': steps, 'n': n, **{k: round(s[k], 4) for k in ('struct_valid', 'comp_valid', 'unique')},
           'prompt_adherence': round(sum(prompt_adherence(g, prompt_elements(q)) * len(g)
                                         for g, q in zip(per, prompts) if g) / n, 4),
           'median_energy_per_atom': round(float(np.nanmedian(energies)), 4),
           'crystals_per_s': round(n / seconds, 3)}
    if systems is not None:
        row['system_adherence'] = round(sum(crystal_system_of(a) == s for g, s in zip(per, systems) for a in g) / n, 4)
    return row, best


def compare_best(rows: list, bests: list):
    "Per prompt: lowest energy at each setting minus that of the most steps, median and share of prompts within 0.1."
    ref = np.array(bests[int(np.argmax([r['steps'] for r in rows]))])
    for row, best in zip(rows, bests):
        d = np.array(best) - ref
        d = d[np.isfinite(d)]
        row['best_energy_minus_most_steps'] = round(float(np.median(d)), 4) if len(d) else None
        row['prompts_within_0.1_eV_of_most_steps'] = round(float(np.mean(d <= 0.1)), 4) if len(d) else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-prompts', type=int, default=30)
    p.add_argument('--n-per', type=int, default=4, help='samples per prompt')
    p.add_argument('--steps', type=int, nargs='+', default=[20, 50, 100, 200, 1000])
    p.add_argument('--models', nargs='+', default=['composition', 'general'], choices=['composition', 'general'])
    p.add_argument('--record', action='store_true', help=f'write the table to {MEASURES.name}')
    a = p.parse_args(argv)
    if min(a.steps) < 1: p.error(f'--steps must be 1 or more, got {min(a.steps)}')
    t_start = time.time()
    test_ds = load_dataset('mp_mix_20', 'test', verbose=False)
    held_out = held_out_crystals(load_dataset('mp_mix_20', 'train', verbose=False), test_ds, a.n_prompts, 20)
    cells = [c.num_atoms for c in held_out]
    results = {}
    for kind in a.models:
        model = Chameleon.load(kind)
        prompts, systems = prompts_for(kind, held_out, test_ds)
        rows, bests = [], []
        for steps in a.steps:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                row, best = measure(model, prompts, systems, cells, a.n_per, steps)
            rows.append(row); bests.append(best)
            print(kind, row, flush=True)
        compare_best(rows, bests)
        for row in rows: print(kind, row['steps'], 'steps: best energy vs most steps',
                               row['best_energy_minus_most_steps'], 'eV/atom (median over prompts)')
        results[kind] = rows
    if a.record:
        entry = {'date': time.strftime('%Y-%m-%d'), 'command': 'python benchmarks/bench_sampling_steps.py ' +
                 ' '.join(argv if argv is not None else __import__('sys').argv[1:]),
                 'hardware': f'{platform.machine()} cpu, {torch.get_num_threads()} thread(s)',
                 'seconds': round(time.time() - t_start), 'prompts': len(held_out), 'results': results}
        write_text_atomic(MEASURES, json.dumps(entry, indent=1) + '\n')
        print(f'recorded in {MEASURES.name}')


if __name__ == '__main__':
    main()
