"""Sweep the corrector step size γ (`step_lr`) of a CSP model on the validation crystals it never trained on.

    python benchmarks/tune_step_lr.py perov5_csp --dataset perov_5 --split val --values 5e-7 2e-6 1e-5

The training script (scripts/train_crystal_diffusion.py) holds out `--valid-fraction` of its split with a fixed permutation
(seed 1234); this script rebuilds the same held-out crystals, so that γ is chosen without looking at the test split.
For each γ: CSP match rate and RMSE (`csp_benchmark`, one sample per composition, all steps) on the first `--n` of them.
`--write GAMMA` then stores the chosen γ in the checkpoint (config['step_lr'], the sweep under 'step_lr_tuning').
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'scripts'))
from _run import (validation_split)  # the training script's split

from crystal_tutorial.core import load_checkpoint, write_atomic
from crystal_tutorial.core import WEIGHTS_DIR
from crystal_tutorial.crystal_diffusion import SHIPPED_MODELS, load_crystal_diffusion
from crystal_tutorial.crystal_sampling import csp_benchmark
from crystal_tutorial.crystal_data import load_dataset

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('model', help='a shipped CSP model name (perov5_csp, mp_mix_20_csp) or a checkpoint path')
p.add_argument('--dataset', default='perov_5')
p.add_argument('--split', default='val', help='the split the model was trained on')
p.add_argument('--valid-fraction', type=float, default=0.05, help='as given to the training script')
p.add_argument('--n', type=int, default=200, help='at most this many held-out crystals')
p.add_argument('--values', type=float, nargs='+', default=[5e-7, 2e-6, 1e-5], help='the γ values to try')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--json', default=None, help='also write the figures here')
p.add_argument('--write', type=float, default=None, metavar='GAMMA',
               help="after the sweep, store this γ as the checkpoint's config['step_lr'], with the sweep under 'step_lr_tuning' (weights untouched)")

if __name__ == '__main__':
    args = p.parse_args()
    model = load_crystal_diffusion(args.model)
    if model.task != 'csp': raise SystemExit(f'{args.model} is a {model.task.upper()} model: this sweep measures CSP match rates')
    ds = load_dataset(args.dataset, args.split)
    _, valid_idx = validation_split(len(ds), args.valid_fraction)
    held_out = [ds[int(i)] for i in valid_idx[:args.n]]
    print(f'{args.model}: {len(held_out)} held-out crystals of {args.dataset}/{args.split} (the training run\'s validation set)')
    rows = []
    for value in args.values:
        model.config.step_lr = value
        t0 = time.time()
        r = csp_benchmark(model, held_out, seed=args.seed)
        rows.append({'step_lr': value, 'match_rate': r['match_rate@1'], 'rmse': r['rmse@1'], 'seconds': round(time.time() - t0)})
        print(f"step_lr {value:<8g} match rate {r['match_rate@1']:.3f}  RMSE {r['rmse@1']:.4f}  ({rows[-1]['seconds']} s)", flush=True)
    if args.json:
        with open(args.json, 'w') as f: json.dump({'model': args.model, 'n': len(held_out), 'rows': rows}, f, indent=2)
    if args.write is not None:
        path = WEIGHTS_DIR / SHIPPED_MODELS[args.model][0] if args.model in SHIPPED_MODELS else Path(args.model)
        state = load_checkpoint(path)
        state['config']['step_lr'] = args.write
        state['step_lr_tuning'] = {'previous': state.get('step_lr_tuning'), 'chosen': args.write, 'on': f'{len(held_out)} held-out crystals of {args.dataset}/{args.split}',
                                   'command': 'python ' + ' '.join(sys.argv), 'rows': rows}
        write_atomic(path, lambda tmp: torch.save(state, tmp))
        print(f'wrote step_lr = {args.write:g} into {path}')
