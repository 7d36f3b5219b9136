"""Train a CDVAE (notebook 17) on a dataset split.

    python scripts/train_cdvae.py --dataset carbon_24 --split val --prop energy_per_atom --epochs 100 \\
        --max-minutes 25 --threads 1 --out crystal_tutorial/weights/cdvae_carbon24.pt

Every field of `CDVAEConfig` is an option (`--latent-dim`, `--beta`, `--hidden`, ...); `lattice_scale` and
`max_atoms` are fitted to the data unless given. A fraction of the split is held out for validation
(`--valid-fraction`, the same permutation as the other training scripts), so the test split stays untouched.

The run is resumable: after every epoch the full training state goes to `<out>.last.pt` (or `--state`), and
the same command continues from it; `--max-minutes` stops cleanly after a time budget. At the end (or when the
budget is spent) `--out` gets a compact checkpoint for `load_cdvae`: weights, configuration, history,
training time, hardware, data and command.
"""
import json
import shlex
import sys
from dataclasses import asdict

import torch

from crystal_tutorial.cdvae import CDVAEConfig, cdvae_learner
from crystal_tutorial.core import save_checkpoint
from crystal_tutorial.crystal_diffusion import config_for_data, save_training_state
from _run import (add_config_options, config_overrides, fit_in_budget, load_split, resume_learner,
                  run_parser, run_setup, saved_or_new_config, say_written, split_for_training)

DATA_FITTED = ('lattice_scale', 'max_atoms')

p = run_parser(__doc__, dataset='carbon_24', split='val')
add_config_options(p, CDVAEConfig, DATA_FITTED)


def main():
    args = p.parse_args()
    out, state_path, device, hardware = run_setup(args)
    ds = load_split(args)
    _, valid_idx, train_ds, valid_ds, data = split_for_training(args, ds)
    print(f'{args.dataset}/{args.split}: {len(train_ds):,} training and {len(valid_idx):,} validation '
          f'crystals; {device} ({hardware})')
    overrides = config_overrides(args, CDVAEConfig)
    command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
    config = saved_or_new_config(state_path, CDVAEConfig, overrides,
                                 lambda: config_for_data(train_ds, CDVAEConfig, **overrides))
    learn = cdvae_learner(config, train_ds, valid_ds, device=device)
    elapsed = resume_learner(learn, state_path) if state_path.exists() else 0.0
    learn.distribute(seed=config.seed)                  # under torchrun: a shard of the data per process
    print('configuration:', json.dumps(asdict(config)))
    print(f'{sum(q.numel() for q in learn.model.parameters()):,} parameters')
    save = lambda sec: save_training_state(learn, state_path, elapsed=sec, data=data, command=command,
                                           hardware=hardware, model_class='CDVAE')
    seconds, complete = fit_in_budget(learn, args, config.epochs, save, elapsed)
    save_checkpoint(out, learn.model, model_class='CDVAE', config=asdict(config), history=learn.history,
                    epochs_done=learn.epoch, complete=complete, train_seconds=seconds, hardware=hardware,
                    data=data, command=command, torch_version=str(torch.__version__))
    say_written(out, learn, seconds, complete, state_path)


if __name__ == '__main__':
    main()
