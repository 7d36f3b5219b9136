"""Time and memory per sample of the general-text model by cell size, up to Chemeleon's 40 atoms, on this machine.

    python benchmarks/bench_large_cells.py --sizes 10 20 40 --n-samples 5

Each setting samples `--n-samples` crystals of one cell size for "Orthorhombic crystal structure of Dy3In5 ..."-style
prompts in one batched chain (diffusion route, the formula constraint on, no symmetry template so that every size is
served alike): with the model's 1,000 steps and corrector (the default of `sample`), and with fewer predictor-only steps.
Prints seconds per sample and the peak resident memory of the process.

    python benchmarks/bench_large_cells.py --corrector --n-prompts 12 --n-samples 3

compares, for MP-40 test prompts of 24-40 atoms (after the first 100 rows), the Langevin corrector (the model's own γ)
with predictor-only steps at `sample`'s 200 steps, first draws only (no redraw): seconds per sample, structural
validity and crystal-system match. This measure set `sample`'s default for cells larger than the trained ones
(no corrector); `--record` writes it to crystal_tutorial/weights/large_cell_measures.json.
"""
import json
from pathlib import Path
import argparse
import resource
import time
import warnings

import torch

from crystal_tutorial.chameleon import Chameleon
from crystal_tutorial.adherence import crystal_system_of
from crystal_tutorial.core import write_text_atomic

MEASURES = Path(__file__).resolve().parents[1] / 'crystal_tutorial' / 'weights' / 'large_cell_measures.json'

FORMULA_FOR = {10: 'Ba2NdMoO6', 20: 'Ba2NdMoO6', 40: 'Dy3In5', 16: 'Dy3In5', 32: 'Dy3In5', 8: 'Dy3In5'}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[10, 20, 40])
    p.add_argument('--n-samples', type=int, default=5)
    p.add_argument('--settings', nargs='+', default=['1000+corrector', '250', '100'],
                   help="'1000+corrector' (the default of sample) or a number of predictor-only steps")
    p.add_argument('--corrector', action='store_true', help='corrector against predictor only, on MP-40 prompts')
    p.add_argument('--n-prompts', type=int, default=12, help='--corrector: prompts of 24-40 atoms')
    p.add_argument('--record', action='store_true', help=f'--corrector: write the figures to {MEASURES.name}')
    a = p.parse_args(argv)
    model = Chameleon.load_general_text_model()
    if a.corrector: return corrector_measure(model, a)
    print(f'{model}; {torch.get_num_threads()} threads')
    for n in a.sizes:
        prompt = f'Orthorhombic crystal structure of {FORMULA_FOR.get(n, "Dy3In5")} with metallic properties.'
        for setting in a.settings:
            kw = {} if setting == '1000+corrector' else dict(steps=int(setting), step_lr=0.0)
            t0 = time.time()
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                atoms = model.sample(prompt, n_atoms=n, n_samples=a.n_samples, seed=0, route='diffusion', symmetry=None, retries=0, **kw)
            dt = (time.time() - t0) / a.n_samples
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
            print(f'{n:3d} atoms  {setting:>15s}: {dt:6.2f} s/sample, peak memory {rss:,.0f} MB, {len(atoms)} crystals', flush=True)


def large_prompts(n: int) -> list:
    "(prompt, atoms, crystal system) of the first `n` MP-40 test prompts of 24-40 atoms after row 100."
    import pandas as pd
    from crystal_tutorial.crystals import Crystal
    from crystal_tutorial.crystal_data import dataset_csv
    rows = pd.read_csv(dataset_csv('mp_40_chemeleon', 'test', download=False)).iloc[100:]
    out = []
    for _, r in rows.iterrows():
        size = len(Crystal.from_cif(r.cif).to_structure())
        if 24 <= size <= 40: out.append((r.prompt, size, str(r.crystal_system).lower()))
        if len(out) == n: break
    return out


def corrector_measure(model, a):
    from crystal_tutorial.evaluation import structure_validity, to_structure
    from crystal_tutorial.prompt_words import PromptError
    prompts, results = large_prompts(a.n_prompts), {}
    for name, step_lr in (('corrector', model.diffusion.config.step_lr), ('predictor only', 0.0)):
        t0, n, valid, system = time.time(), 0, 0, 0
        for prompt, size, want in prompts:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                try: atoms = model.sample(prompt, n_atoms=size, n_samples=a.n_samples, seed=1, route='diffusion',
                                          retries=0, step_lr=step_lr)
                except PromptError: continue
            n += len(atoms)
            valid += sum(structure_validity(to_structure(x)) for x in atoms)
            system += sum(crystal_system_of(x) == want for x in atoms)
        results[name] = dict(step_lr=step_lr, samples=n, seconds_per_sample=round((time.time() - t0) / max(n, 1), 2),
                             structural_validity=round(valid / max(n, 1), 3), crystal_system_match=round(system / max(n, 1), 3))
        print(name, json.dumps(results[name]), flush=True)
    if a.record:
        doc = dict(command='python benchmarks/bench_large_cells.py ' + ' '.join(argv_of(a)), date=time.strftime('%Y-%m-%d'),
                   hardware=f'x86_64 CPU, {torch.get_num_threads()} threads', prompts=len(prompts), steps=200,
                   results=results)
        write_text_atomic(MEASURES, json.dumps(doc, indent=1) + '\n')


def argv_of(a) -> list:
    return ['--corrector', '--n-prompts', str(a.n_prompts), '--n-samples', str(a.n_samples), '--record']


if __name__ == '__main__':
    main()
