"""Train a crystal flow-matching model (notebook 16) on a dataset split: structure prediction (`--task csp`, the
default) or de novo generation (`--task dng`, the atom types flow too).

    python scripts/train_crystal_flow.py --dataset perov_5 --split val --epochs 350 --max-minutes 58 \\
        --threads 1 --out data/crystal_flow_perov5_csp.pt
    python scripts/train_crystal_flow.py --dataset mp_mix_20 --split train --task dng --epochs 22 \\
        --batch-size 64 --threads 1 --out data/crystal_flow_mp_mix_20_dng.pt

The network, data split and training settings are those of `scripts/train_crystal_diffusion.py` (every field
of `CrystalDiffusionConfig` is an option; the diffusion-only fields are unused), so that a flow model and its
diffusion twin differ only in what they learn: a velocity instead of a noise or a score. A fraction of the
split is held out for validation (`--valid-fraction`, the same permutation as the diffusion script), so the
test split stays untouched.

The run is resumable: after every epoch the full training state goes to `<out>.last.pt` (or `--state`), and
the same command continues from it; `--max-minutes` stops cleanly after a time budget. At the end (or when the
budget is spent) `--out` gets a compact checkpoint for `load_crystal_flow`: weights, configuration, history,
training time, hardware, data and command.
"""
import json
import shlex
import sys
from dataclasses import asdict, fields

import torch

from crystal_tutorial.core import load_checkpoint, save_checkpoint, set_seed
from crystal_tutorial.crystal_diffusion import CrystalDiffusionConfig, config_for_data, save_training_state
from crystal_tutorial.flow_matching import crystal_flow_learner
from _run import (add_config_options, fit_in_budget, load_split, resume_learner, run_parser, run_setup,
                  say_written, split_for_training)

DATA_FITTED = ('lattice_scale', 'lattice_clip', 'max_atoms')

p = run_parser(__doc__, dataset='perov_5', split='val')
add_config_options(p, CrystalDiffusionConfig, DATA_FITTED)


def main():
    args = p.parse_args()
    out, state_path, device, hardware = run_setup(args)
    ds = load_split(args)
    _, valid_idx, train_ds, valid_ds, data = split_for_training(args, ds)
    print(f'{args.dataset}/{args.split}: {len(train_ds):,} training and {len(valid_idx):,} validation crystals; {device} ({hardware})')
    overrides = {f.name: getattr(args, f.name) for f in fields(CrystalDiffusionConfig)
                 if getattr(args, f.name, None) is not None}
    command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
    set_seed(overrides.get('seed', 0))
    config = config_for_data(train_ds, **{'task': 'csp', **overrides})
    elapsed = 0.0
    if state_path.exists():
        saved = load_checkpoint(state_path)['config']
        # resuming keeps the saved settings
        config = CrystalDiffusionConfig.from_dict({**saved, 'epochs': config.epochs})
    learn = crystal_flow_learner(config, train_ds, valid_ds, device=device)
    if state_path.exists(): elapsed = resume_learner(learn, state_path)
    learn.distribute(seed=config.seed)                  # under torchrun: a shard of the data per process
    print('configuration:', json.dumps(asdict(config)))
    print(f'{sum(q.numel() for q in learn.model.parameters()):,} parameters')
    save = lambda sec: save_training_state(learn, state_path, elapsed=sec, data=data, command=command,
                                           hardware=hardware,
                                           model_class='CrystalFlow')
    seconds, complete = fit_in_budget(learn, args, config.epochs, save, elapsed)
    save_checkpoint(out, learn.model, model_class='CrystalFlow', config=asdict(config), history=learn.history,
                    epochs_done=learn.epoch, complete=complete, train_seconds=seconds, hardware=hardware, data=data,
                    command=command, torch_version=str(torch.__version__))
    say_written(out, learn, seconds, complete, state_path)


if __name__ == '__main__':
    main()
