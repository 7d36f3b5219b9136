"""Train a crystal diffusion model (notebook 06) on a dataset split, for crystal structure prediction or de novo generation.

    python scripts/train_crystal_diffusion.py --dataset perov_5 --split val --task csp --epochs 1000 \\
        --out crystal_tutorial/weights/crystal_diffusion_perov5_csp.pt

Every field of `CrystalDiffusionConfig` is an option (--hidden 256 --n-layers 4 --n-steps 1000 --lr 1e-3 ...); `lattice_scale`,
`lattice_clip` and `max_atoms` default to values fitted to the training data. A fraction of the training split is held out
for validation (`--valid-fraction`), so that the dataset's test split stays untouched for evaluation.

The run is resumable: after every epoch the full training state (weights, optimizer, learning-rate schedule, history, elapsed
time) goes to `<out>.last.pt` (or `--state`), and a new run with the same `--out` continues from it; `--max-minutes` stops
cleanly after a time budget (for long CPU runs in the background). At the end (or when the budget is spent) `--out` gets a
compact checkpoint for `load_crystal_diffusion`: weights, configuration, history, training time, hardware, data and command.
"""
import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from crystal_tutorial.core import get_device, save_checkpoint, set_seed
from crystal_tutorial.crystal_diffusion import (CrystalDiffusionConfig, config_for_data, crystal_diffusion_learner,
                                                resume_training, save_training_state)
from crystal_tutorial.crystals import load_dataset

DATA_FITTED = ('lattice_scale', 'lattice_clip', 'max_atoms')

p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
p.add_argument('--dataset', default='perov_5', help="dataset name for load_dataset: perov_5, carbon_24, mp_mix_20, mp_20, toy, ...")
p.add_argument('--split', default='val', help='split to train on (Perov-5 and Carbon-24 ship val and test here: train on val)')
p.add_argument('--limit', type=int, default=None, help='use only the first LIMIT crystals of the split (quick runs)')
p.add_argument('--valid-fraction', type=float, default=0.05, help='fraction of the split held out for the validation loss')
p.add_argument('--out', required=True, help='the final checkpoint (e.g. crystal_tutorial/weights/crystal_diffusion_perov5_csp.pt)')
p.add_argument('--state', default=None, help='resumable training state (default: <out>.last.pt)')
p.add_argument('--max-minutes', type=float, default=None, help='stop after this much training time in this run (resume later)')
p.add_argument('--device', default=None, help="'cpu', 'cuda', 'mps' (default: the best available)")
p.add_argument('--threads', type=int, default=None, help='CPU threads for torch (default: torch decides)')
for f in fields(CrystalDiffusionConfig):
    p.add_argument('--' + f.name.replace('_', '-'), type=type(f.default), default=None,
                   help=f'configuration: {f.name} (default {"fitted to the data" if f.name in DATA_FITTED else f.default})')
args = p.parse_args()

if args.threads: torch.set_num_threads(args.threads)
if not 0 <= args.valid_fraction < 1: sys.exit(f'--valid-fraction must be in [0, 1), got {args.valid_fraction}')
out = Path(args.out)
state_path = Path(args.state) if args.state else out.with_name(out.name + '.last.pt')
device = get_device(args.device)
hardware = (torch.cuda.get_device_name(device) if device.type == 'cuda'
            else f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads')

ds = load_dataset(args.dataset, args.split, **({'limit': args.limit} if args.limit and args.dataset != 'toy' else {}))
if args.limit and args.dataset == 'toy': ds = ds.subset(range(min(args.limit, len(ds))))
perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1234))
n_valid = int(round(args.valid_fraction * len(ds)))
train_ds, valid_ds = ds.subset(perm[n_valid:]), (ds.subset(perm[:n_valid]) if n_valid else None)
data = dict(dataset=args.dataset, split=args.split, limit=args.limit, crystals=len(ds), train=len(train_ds),
            valid=n_valid, sha256=getattr(ds, 'info', {}).get('sha256'))
print(f'{args.dataset}/{args.split}: {len(train_ds):,} training and {n_valid:,} validation crystals; device {device} ({hardware})')

overrides = {f.name: getattr(args, f.name) for f in fields(CrystalDiffusionConfig) if getattr(args, f.name) is not None}
command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
elapsed = 0.0
if state_path.exists():
    learn, extra = resume_training(state_path, train_ds, valid_ds, device=device,
                                   **({'epochs': overrides['epochs']} if 'epochs' in overrides else {}))
    elapsed = float(extra.get('elapsed', 0.0))
    ignored = sorted(k for k in overrides if k != 'epochs' and overrides[k] != getattr(learn.config, k))
    if ignored: print(f'note: resuming keeps the saved configuration; ignoring {ignored}')
    print(f'resuming from {state_path} after epoch {learn.epoch} ({elapsed / 60:.1f} min so far)')
else:
    set_seed(overrides.get('seed', 0))
    learn = crystal_diffusion_learner(config_for_data(train_ds, **overrides), train_ds, valid_ds, device=device)
config = learn.config
print('configuration:', json.dumps(asdict(config)))
print(f'{sum(q.numel() for q in learn.model.parameters()):,} parameters')

t0 = time.time()
budget = args.max_minutes * 60 if args.max_minutes else None
stop = False
while learn.epoch < config.epochs and not stop:
    learn.fit(1, progress=False)
    seconds = elapsed + time.time() - t0
    save_training_state(learn, state_path, elapsed=seconds, data=data, command=command, hardware=hardware)
    h = learn.history[-1]
    print(f"epoch {learn.epoch}/{config.epochs} ({seconds / 60:.1f} min): " + '  '.join(f'{k} {v:.4f}' for k, v in h.items() if k != 'epoch'), flush=True)
    stop = budget is not None and time.time() - t0 > budget

seconds = elapsed + time.time() - t0
complete = learn.epoch >= config.epochs
save_checkpoint(out, learn.model, config=asdict(config), history=learn.history, epochs_done=learn.epoch, complete=complete,
                train_seconds=seconds, hardware=hardware, data=data, command=command, torch_version=str(torch.__version__))
print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB) after {learn.epoch} epochs, {seconds / 60:.1f} min"
      + ('' if complete else f'; not finished: run the same command again to resume from {state_path}'))
