"""What the training scripts share: the run's paths, device and hardware line, the training split, and resuming a Learner.

Imported by the scripts beside it (`python scripts/train_*.py` puts this folder on the path); not part of the library.
"""
import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from crystal_tutorial.core import get_device
from crystal_tutorial.learner import fit_with_budget, init_distributed, rank, world_size
from crystal_tutorial.crystal_data import load_dataset


def run_parser(doc: str, dataset: str, split: str, valid_fraction: float = 0.05) -> argparse.ArgumentParser:
    "The options every training script has (data, output, resuming, device), read by `run_setup` and `load_split`."
    p = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=doc)
    p.add_argument('--dataset', default=dataset, help="dataset name for load_dataset: perov_5, carbon_24, mp_mix_20, toy, ...")
    p.add_argument('--split', default=split, help='split to train on (Perov-5 and Carbon-24 ship val and test: train on val)')
    p.add_argument('--limit', type=int, default=None, help='use only the first LIMIT crystals of the split (quick runs)')
    p.add_argument('--valid-fraction', type=float, default=valid_fraction,
                   help='fraction of the split held out for the validation loss')
    p.add_argument('--out', required=True, help='the final checkpoint (e.g. crystal_tutorial/weights/NAME.pt)')
    p.add_argument('--state', default=None, help='resumable training state (default: <out>.last.pt)')
    p.add_argument('--max-minutes', type=float, default=None,
                   help='stop after this much training time in this run (resume later)')
    p.add_argument('--device', default=None, help="'cpu', 'cuda', 'mps' (default: the best available)")
    p.add_argument('--threads', type=int, default=None, help='CPU threads for torch (default: torch decides)')
    return p


def run_setup(args) -> tuple:
    """Threads, the output and state paths, the device and a hardware line, from the options every script has (--threads,
    --out, --state, --device, --valid-fraction). Under `torchrun` it joins the process group; only rank 0 prints."""
    if args.threads: torch.set_num_threads(args.threads)
    if init_distributed() > 1 and rank() > 0: sys.stdout = open(os.devnull, 'w')
    if not 0 <= args.valid_fraction < 1: sys.exit(f'--valid-fraction must be in [0, 1), got {args.valid_fraction}')
    out = Path(args.out)
    state_path = Path(args.state) if args.state else out.with_name(out.name + '.last.pt')
    device = get_device(args.device)
    if device.type == 'cuda' and world_size() > 1: device = torch.device('cuda', torch.cuda.current_device())
    hardware = (torch.cuda.get_device_name(device) if device.type == 'cuda'
                else f'{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads')
    if world_size() > 1: hardware += f', {world_size()} processes'
    return out, state_path, device, hardware


def others_stop():
    "After training under torchrun: every rank but 0 leaves here (rank 0 writes the final checkpoint)."
    if world_size() > 1 and rank() > 0: sys.exit(0)


def load_split(args):
    "The crystals of --dataset/--split, only the first --limit of them if given (the toy set included)."
    ds = load_dataset(args.dataset, args.split, **({'limit': args.limit} if args.limit and args.dataset != 'toy' else {}))
    return ds.subset(range(min(args.limit, len(ds)))) if args.limit and args.dataset == 'toy' else ds


def resume_learner(learn, state_path) -> float:
    "Restore a Learner's training state, schedule included (`Learner.load`); returns the seconds already spent."
    extra = learn.load(state_path)
    elapsed = float(extra.get('elapsed', 0.0))
    print(f'resuming from {state_path} after epoch {learn.epoch} ({elapsed / 60:.1f} min so far)')
    return elapsed


def config_overrides(args, config_class) -> dict:
    "The configuration fields given on the command line; `--templates` as a tuple of names."
    from dataclasses import fields
    out = {f.name: getattr(args, f.name) for f in fields(config_class)
           if f.name != 'templates' and getattr(args, f.name, None) is not None}
    if getattr(args, 'templates', None):
        out['templates'] = tuple(t.strip() for t in args.templates.split(',') if t.strip())
    return out


def saved_or_new_config(state_path, config_class, overrides: dict, new):
    "The saved configuration when resuming (only `epochs` may change; other overrides are named and ignored), else new()."
    from dataclasses import replace
    from crystal_tutorial.core import load_checkpoint, set_seed
    if not state_path.exists():
        set_seed(overrides.get('seed', 0))
        return new()
    config = config_class.from_dict(load_checkpoint(state_path)['config'])
    if 'epochs' in overrides: config = replace(config, epochs=overrides['epochs'])
    ignored = sorted(k for k in overrides if k != 'epochs' and overrides[k] != getattr(config, k))
    if ignored: print(f'note: resuming keeps the saved configuration; ignoring {ignored}')
    return config


def validation_split(n: int, valid_fraction: float) -> tuple:
    "(training indices, validation indices) of n crystals: a fixed permutation (seed 1234), the first `valid_fraction` held out. benchmarks/tune_step_lr.py rebuilds the same held-out crystals with it."
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1234))
    n_valid = int(round(valid_fraction * n))
    return perm[n_valid:], perm[:n_valid]


def split_for_training(args, ds, min_valid: int = 1) -> tuple:
    """(train_idx, valid_idx, train_ds, valid_ds, data): `ds` with --valid-fraction held out (`validation_split`; valid_ds
    is None with fewer than `min_valid` crystals) and what a checkpoint records of the data."""
    train_idx, valid_idx = validation_split(len(ds), args.valid_fraction)
    train_ds = ds.subset(train_idx)
    valid_ds = ds.subset(valid_idx) if len(valid_idx) >= min_valid else None
    data = dict(dataset=args.dataset, split=args.split, limit=args.limit, crystals=len(ds), train=len(train_ds),
                valid=len(valid_idx), sha256=getattr(ds, 'info', {}).get('sha256'))
    return train_idx, valid_idx, train_ds, valid_ds, data


def fit_in_budget(learn, args, epochs: int, save, elapsed: float = 0.0) -> tuple:
    """Train `learn` to `epochs` within --max-minutes, calling `save(seconds)` after every epoch; (seconds, complete).
    Under torchrun only rank 0 returns (the others leave here)."""
    budget = args.max_minutes * 60 if args.max_minutes is not None else None
    seconds = fit_with_budget(learn, epochs, save, budget, elapsed, log=lambda m: print(m, flush=True))
    others_stop()
    return seconds, learn.epoch >= epochs


def say_written(out, learn, seconds: float, complete: bool, state_path):
    "The last line of a training run: what was written, and how to go on when it is not finished."
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB) after {learn.epoch} epochs, {seconds / 60:.1f} min"
          + ('' if complete else f'; not finished: run the same command again to resume from {state_path}'))


def add_config_options(p, config_class, fitted=(), defaults=None, skip=()):
    "One --option per field of `config_class` (not given: the saved, the script's, the fitted or the class's value)."
    from dataclasses import fields
    for f in fields(config_class):
        if f.name in skip: continue
        shown = (defaults or {}).get(f.name, 'fitted to the data' if f.name in fitted else f.default)
        kind = ((lambda s: bool(int(s))) if isinstance(f.default, bool) else int if f.default is None
                else type(f.default))
        p.add_argument('--' + f.name.replace('_', '-'), type=kind, default=None,
                       help=f'configuration: {f.name} (default {shown})')
