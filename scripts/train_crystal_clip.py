"""Train a Crystal CLIP model (notebook 20): a CSPNet crystal encoder and a projection of frozen all-MiniLM-L6-v2 text embeddings.

    python scripts/train_crystal_clip.py --dataset mp_mix_20 --split train --epochs 30 \\
        --out crystal_tutorial/weights/crystal_clip_mp_mix_20.pt

Every field of `CrystalCLIPConfig` is an option (--hidden 128 --n-layers 3 --embed-dim 128 --lr 1e-3 ...; --locked-text 1
trains the baseline with the text side locked); `lattice_scale` and `max_atoms` default to values fitted to the training data.
The texts of each crystal are generated from its data with the training templates; their baseline embeddings are cached in
`data_dir()/text_embeddings`, so only the first run pays for them. A fraction of the split is held out for the validation
loss (`--valid-fraction`), so that the dataset's test split stays untouched for evaluation.

The run is resumable: after every epoch the full training state (weights, optimizer, learning-rate schedule, history, elapsed
time) goes to `<out>.last.pt` (or `--state`), and a new run with the same `--out` continues from it; `--max-minutes` stops
cleanly after a time budget. At the end (or when the budget is spent) `--out` gets a compact checkpoint for
`load_crystal_clip`: weights, configuration, history, training time, hardware, data and command.
"""
import json
import shlex
import sys
import time
from dataclasses import asdict

import torch

from crystal_tutorial.clip import (CrystalCLIPConfig, CrystalTextDataset, crystal_clip_learner, pair_texts,
                                   save_crystal_clip)
from crystal_tutorial.texts import TextEmbeddingCache, dataset_facts
from crystal_tutorial.crystal_diffusion import config_for_data
from _run import (add_config_options, config_overrides, fit_in_budget, load_split, resume_learner,
                  run_parser, run_setup, saved_or_new_config, say_written, split_for_training)

DATA_FITTED = ('lattice_scale', 'max_atoms')

p = run_parser(__doc__, dataset='mp_mix_20', split='train')
p.add_argument('--templates', default=None, help='comma-separated training templates (default: all of TRAIN_TEMPLATES)')
add_config_options(p, CrystalCLIPConfig, DATA_FITTED, skip=('templates',))
args = p.parse_args()

out, state_path, device, hardware = run_setup(args)
ds = load_split(args)
t0 = time.time()
facts = dataset_facts(ds)
print(f'facts of {len(ds):,} crystals in {time.time() - t0:.0f} s')
train_idx, valid_idx, train_ds, valid_ds, data = split_for_training(args, ds, min_valid=2)
n_valid = len(valid_idx)
print(f'{args.dataset}/{args.split}: {len(train_ds):,} training and {n_valid:,} validation crystals; device {device} ({hardware})')

overrides = config_overrides(args, CrystalCLIPConfig)
command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
elapsed, resume = 0.0, state_path.exists()
config = saved_or_new_config(state_path, CrystalCLIPConfig, overrides, lambda: config_for_data(train_ds, CrystalCLIPConfig, **overrides))

cache = TextEmbeddingCache()
t0 = time.time()
train_texts = pair_texts([facts[i] for i in train_idx.tolist()], config.templates)
train_pairs = CrystalTextDataset(train_ds, train_texts, cache, seed=config.seed)
valid_pairs = (CrystalTextDataset(valid_ds, pair_texts([facts[i] for i in valid_idx.tolist()], config.templates), cache, seed=1)
               if valid_ds is not None else None)
cache.save()
print(f'{len(train_pairs.vocab):,} distinct training texts embedded (or read from {cache.path}) in {time.time() - t0:.0f} s')

learn = crystal_clip_learner(config, train_pairs, valid_pairs, device=device)
if resume:
    elapsed = resume_learner(learn, state_path)
learn.distribute(seed=config.seed)                      # under torchrun: a shard of the data per process
print('configuration:', json.dumps(asdict(config)))
print(f'{sum(q.numel() for q in learn.model.parameters() if q.requires_grad):,} trainable parameters')

save = lambda sec: learn.save(state_path, keep_previous=True, config=asdict(config), elapsed=sec, data=data, command=command, hardware=hardware)
seconds, complete = fit_in_budget(learn, args, config.epochs, save, elapsed)
save_crystal_clip(out, learn.model, history=learn.history, epochs_done=learn.epoch, complete=complete, train_seconds=seconds,
                  hardware=hardware, data=data, command=command, torch_version=str(torch.__version__))
say_written(out, learn, seconds, complete, state_path)
