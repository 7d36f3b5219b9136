"""Chemeleon's evaluation protocol on its MP-40 test prompts, for the shipped general-text model.

    python benchmarks/eval_chemeleon_protocol.py --n-prompts 30 --n-samples 5 --steps 100 --record

For each test prompt ("Orthorhombic crystal structure of Dy3In5 with metallic properties.", `n_atoms` = the known
crystal's cell size, as Chemeleon's `scripts/evaluate.py` does), `--n-samples` crystals are drawn and scored as there:
- validity: structural (no two atoms closer than 0.5 Å, a cell of volume) and compositional (SMACT) validity, chapter 08;
- uniqueness: distinct crystals among a prompt's samples (StructureMatcher);
- composition match: the sample's reduced formula is the known crystal's;
- crystal-system match: spglib (symprec 0.1) finds the known crystal's system;
- structure match: any of the samples matches the known crystal (pymatgen StructureMatcher, default tolerances);
- metastability: CHGNet energy per atom of a composition-matched sample at most the known crystal's + 0.1 eV/atom
  (both unrelaxed, so that the potential compares the structures as generated).
Three settings: `guidance` (the text condition alone: diffusion, no element, formula or symmetry constraint),
`constraints` (diffusion with the prompt's elements, exact formula, chapter 24, and symmetry template, chapter 14) and
`auto` (`Chameleon.sample`'s default: known crystals of chapter 15 for a prompt with a formula, topped up by the
constrained diffusion), and `known`: the known crystals themselves, scored the same way, the ceiling of a sampler that
follows the prompt's formula (some known crystals fail SMACT's composition check). The prompts are --n-prompts rows of `mp_40_chemeleon/test.csv` after the first --skip (a fixed order); the
dataset is read from the local copy and never shipped.
"""
import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from crystal_tutorial.chameleon import Chameleon, PromptError, SampleOptions
from crystal_tutorial.adherence import crystal_system_of
from crystal_tutorial.core import write_text_atomic
from crystal_tutorial.crystal_data import dataset_csv
from crystal_tutorial.evaluation import composition_validity, structure_validity, to_structure
from crystal_tutorial.stability import chgnet_energies

SETTINGS = {'guidance': dict(route='diffusion', symmetry=None, follow_formula=False, restrict_elements=False, charge_balanced=False),
            'constraints': dict(route='diffusion'),
            'auto': dict(route='auto'), 'known': None}
MEASURES = Path(__file__).resolve().parents[1] / 'crystal_tutorial' / 'weights' / 'chameleon_mp40_measures.json'


def score(samples, known, system) -> dict:
    "Chemeleon's measures for one prompt's samples (pymatgen Structures) against the known crystal."
    from pymatgen.analysis.structure_matcher import StructureMatcher
    sm = StructureMatcher()
    n = len(samples)
    valid = [structure_validity(s) and composition_validity(s) for s in samples]
    same_comp = [s.composition.reduced_formula == known.composition.reduced_formula for s in samples]
    systems = [crystal_system_of(s) for s in samples]
    distinct = []
    for s in samples:
        if not any(sm.fit(s, d) for d in distinct): distinct.append(s)
    match = any(c and sm.fit(s, known) for s, c in zip(samples, same_comp))
    e = chgnet_energies([known] + [s for s, c in zip(samples, same_comp) if c])
    stable = int(np.sum(e[1:] <= e[0] + 0.1)) if np.isfinite(e[0]) else 0
    return dict(n=n, valid=sum(valid), unique=len(distinct), comp=sum(same_comp), system=sum(x == system for x in systems),
                match=int(match), metastable=stable)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n-prompts', type=int, default=30)
    p.add_argument('--skip', type=int, default=0, help='start after this many prompts (a second sample of prompts)')
    p.add_argument('--n-samples', type=int, default=5)
    p.add_argument('--steps', type=int, default=100, help='denoising steps of the diffusion settings (the model has 1000)')
    p.add_argument('--step-lr', type=float, default=0.0, help="the corrector's γ (0: predictor only, half the network passes)")
    p.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument('--record', action='store_true', help=f'write the figures to {MEASURES.name}')
    p.add_argument('--weights', default='general', help='a general-text checkpoint instead of the shipped model')
    p.add_argument('--json', default=None, help='also write the figures here')
    a = p.parse_args(argv)
    if a.record and a.weights != 'general': p.error('--record keeps the shipped model\'s figures: drop --weights or --record')
    rows = pd.read_csv(dataset_csv('mp_40_chemeleon', 'test', download=False)).iloc[a.skip:a.skip + a.n_prompts]
    model = Chameleon.load(a.weights)
    from crystal_tutorial.crystals import Crystal
    knowns = [Crystal.from_cif(c).to_structure() for c in rows.cif]
    out = {}
    for name in a.settings:
        t0, totals, refused = time.time(), {}, []
        for (_, r), known in zip(rows.iterrows(), knowns):
            if SETTINGS[name] is None:                                # the known crystal, scored as a sample
                s = score([known], known, str(r.crystal_system).lower())
                for k, v in s.items(): totals[k] = totals.get(k, 0) + v
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    atoms = model.sample(r.prompt, n_atoms=len(known), n_samples=a.n_samples, steps=a.steps, step_lr=a.step_lr, seed=0,
                                         **SETTINGS[name])
            except PromptError as e: refused.append(f'{r.material_id}: {e}'); continue
            s = score([to_structure(x) for x in atoms], known, str(r.crystal_system).lower())
            for k, v in s.items(): totals[k] = totals.get(k, 0) + v
        seconds = time.time() - t0
        n, prompts = totals.get('n', 0), len(rows) - len(refused)
        res = dict(prompts=len(rows), refused=len(refused), samples=n, seconds_per_sample=round(seconds / max(n, 1), 2),
                   validity=totals['valid'] / n, uniqueness=totals['unique'] / n, composition_match=totals['comp'] / n,
                   crystal_system_match=totals['system'] / n, structure_match_any=totals['match'] / prompts,
                   metastable=totals['metastable'] / n, refusals=refused[:5],
                   retries=SampleOptions().retries if SETTINGS[name] is not None else None)
        out[name] = res
        print(name, json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}), flush=True)
    if a.json: write_text_atomic(Path(a.json), json.dumps({'args': vars(a), 'results': out}, indent=1) + '\n')
    if a.record:
        doc = json.loads(MEASURES.read_text()) if MEASURES.exists() else {}
        which = f'first {a.n_prompts} prompts' if not a.skip else f'prompts {a.skip + 1}-{a.skip + a.n_prompts}'
        key = f'mp_40_chemeleon test, {which} x {a.n_samples}, steps {a.steps}, step_lr {a.step_lr:g}'
        entry = doc.setdefault(key, dict(model='chameleon_general.pt', results={}))
        entry['results'].update(out)                            # settings measured before are kept
        entry.setdefault('commands', [entry.pop('command')] if 'command' in entry else []).append(
            f"{time.strftime('%Y-%m-%d')}: python benchmarks/eval_chemeleon_protocol.py " + ' '.join(argv or __import__('sys').argv[1:]))
        entry['date'] = time.strftime('%Y-%m-%d')
        write_text_atomic(MEASURES, json.dumps(doc, indent=1) + '\n')


if __name__ == '__main__':
    main()
