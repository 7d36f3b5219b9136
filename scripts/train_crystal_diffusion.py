"""Train a crystal diffusion model (notebook 11) on a dataset split, for crystal structure prediction or de novo generation.

    python scripts/train_crystal_diffusion.py --dataset perov_5 --split val --task csp --epochs 1000 \\
        --out crystal_tutorial/weights/crystal_diffusion_perov5_csp.pt

Every field of `CrystalDiffusionConfig` is an option (--hidden 256 --n-layers 4 --n-steps 1000 --lr 1e-3 ...); `lattice_scale`,
`lattice_clip` and `max_atoms` default to values fitted to the training data. A fraction of the training split is held out
for validation (`--valid-fraction`), so that the dataset's test split stays untouched for evaluation.

The run is resumable: after every epoch the full training state (weights, optimizer, learning-rate schedule, history, elapsed
time) goes to `<out>.last.pt` (or `--state`), and a new run with the same `--out` continues from it; `--max-minutes` stops
cleanly after a time budget (for long CPU runs in the background). At the end (or when the budget is spent) `--out` gets a
compact checkpoint for `load_crystal_diffusion`: weights, configuration, history, training time, hardware, data and command.

`--init-from CKPT` continues training a finished model (fine-tuning with a fresh optimizer and learning-rate schedule): the
network and diffusion settings come from CKPT, the training options (--epochs, --lr, --batch-size, --seed, ...) from the
command line; the new checkpoint records the earlier run under `earlier` and counts its time in `train_seconds`.
"""
import json
import shlex
import sys
from dataclasses import asdict, fields

import torch

from crystal_tutorial.core import save_checkpoint, set_seed
from crystal_tutorial.crystal_diffusion import (CrystalDiffusionConfig, config_for_data, crystal_diffusion_learner,
                                                resume_training, save_training_state)
from _run import (add_config_options, fit_in_budget, load_split, run_parser, run_setup, say_written,
                  split_for_training)

DATA_FITTED = ('lattice_scale', 'lattice_clip', 'max_atoms')

p = run_parser(__doc__, dataset='perov_5', split='val')
p.add_argument('--init-from', default=None, metavar='CKPT', help='start from the weights and configuration of this checkpoint (fine-tuning; fresh optimizer and schedule)')
p.add_argument('--amp', action='store_true', help='mixed precision: the loss in bfloat16 autocast; for GPUs (on a CPU without bfloat16 units, 20x slower)')
p.add_argument('--compile', action='store_true', help='torch.compile the denoiser, in place (checkpoints unchanged); for GPUs (on this project\'s CPU: 25 s to compile, then 5 % slower)')
add_config_options(p, CrystalDiffusionConfig, DATA_FITTED)
args = p.parse_args()

out, state_path, device, hardware = run_setup(args)
ds = load_split(args)
_, valid_idx, train_ds, valid_ds, data = split_for_training(args, ds)
n_valid = len(valid_idx)
print(f'{args.dataset}/{args.split}: {len(train_ds):,} training and {n_valid:,} validation crystals; device {device} ({hardware})')

overrides = {f.name: getattr(args, f.name) for f in fields(CrystalDiffusionConfig) if getattr(args, f.name) is not None}
command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
elapsed = 0.0
if state_path.exists():
    learn, extra = resume_training(state_path, train_ds, valid_ds, device=device,
                                   **({'epochs': overrides['epochs']} if 'epochs' in overrides else {}))
    elapsed = float(extra.get('elapsed', 0.0))
    if 'earlier' in (extra.get('data') or {}): data['earlier'] = extra['data']['earlier']     # a resumed fine-tuning run
    ignored = sorted(k for k in overrides if k != 'epochs' and overrides[k] != getattr(learn.config, k))
    if ignored: print(f'note: resuming keeps the saved configuration; ignoring {ignored}')
    print(f'resuming from {state_path} after epoch {learn.epoch} ({elapsed / 60:.1f} min so far)')
elif args.init_from:
    from crystal_tutorial.core import load_checkpoint
    earlier = load_checkpoint(args.init_from)
    set_seed(overrides.get('seed', 0))
    learn = crystal_diffusion_learner(CrystalDiffusionConfig(**{**earlier['config'], **overrides}), train_ds, valid_ds, device=device)
    learn.model.load_state_dict(earlier['model'])
    elapsed = float(earlier.get('train_seconds', 0.0))
    data['earlier'] = {k: earlier.get(k) for k in ('command', 'epochs_done', 'train_seconds', 'hardware', 'config')}
    data['earlier']['history'] = earlier.get('history')
    print(f'fine-tuning {args.init_from} ({earlier.get("epochs_done")} epochs, {elapsed / 60:.1f} min so far)')
else:
    set_seed(overrides.get('seed', 0))
    learn = crystal_diffusion_learner(config_for_data(train_ds, **overrides), train_ds, valid_ds, device=device)
config = learn.config
learn.distribute(seed=config.seed)                      # under torchrun: a shard of the data per process
learn.amp = args.amp
if args.compile: learn.model.net.compile(dynamic=True)       # nn.Module.compile: the state_dict keeps its keys
print('configuration:', json.dumps(asdict(config)))
print(f'{sum(q.numel() for q in learn.model.parameters()):,} parameters')

save = lambda sec: save_training_state(learn, state_path, elapsed=sec, data=data, command=command, hardware=hardware)
seconds, complete = fit_in_budget(learn, args, config.epochs, save, elapsed)
save_checkpoint(out, learn.model, config=asdict(config), history=learn.history, epochs_done=learn.epoch, complete=complete,
                train_seconds=seconds, hardware=hardware, data=data, command=command, torch_version=str(torch.__version__))
say_written(out, learn, seconds, complete, state_path)
