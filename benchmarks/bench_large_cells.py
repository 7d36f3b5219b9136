"""Time and memory per sample of the general-text model by cell size, up to Chemeleon's 40 atoms, on this machine.

    python benchmarks/bench_large_cells.py --sizes 10 20 40 --n-samples 5

Each setting samples `--n-samples` crystals of one cell size for "Orthorhombic crystal structure of Dy3In5 ..."-style
prompts in one batched chain (diffusion route, the formula constraint on, no symmetry template so that every size is
served alike): with the model's 1,000 steps and corrector (the default of `sample`), and with fewer predictor-only steps.
Prints seconds per sample and the peak resident memory of the process.
"""
import argparse
import resource
import time
import warnings

import torch

from crystal_tutorial.chameleon import Chameleon

FORMULA_FOR = {10: 'Ba2NdMoO6', 20: 'Ba2NdMoO6', 40: 'Dy3In5', 16: 'Dy3In5', 32: 'Dy3In5', 8: 'Dy3In5'}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[10, 20, 40])
    p.add_argument('--n-samples', type=int, default=5)
    p.add_argument('--settings', nargs='+', default=['1000+corrector', '250', '100'],
                   help="'1000+corrector' (the default of sample) or a number of predictor-only steps")
    a = p.parse_args(argv)
    model = Chameleon.load_general_text_model()
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


if __name__ == '__main__':
    main()
