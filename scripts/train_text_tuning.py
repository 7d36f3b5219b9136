"""Fine-tune Crystal CLIP's text side (notebook 21): the top BERT layers of all-MiniLM-L6-v2 learn with the crystal encoder.

    python scripts/train_text_tuning.py --dataset mp_mix_20 --split train --epochs 6 --text-lr 2e-4 --role-weight 2 \\
        --role-texts 64 --system-weight 1 --threads 1 --out crystal_tutorial/weights/crystal_clip_tuned.pt

The crystal side starts from chapter 20's shipped Crystal CLIP (`--init mp_mix_20`; `--init ''` starts afresh); a fresh
copy of the packaged all-MiniLM-L6-v2 has its top `--tuned-layers` layers trainable (the embeddings and lower layers stay
frozen). Each crystal's texts are chapter 19's training templates plus two element-role texts ("an oxide of an
alkaline-earth metal and a transition metal", and the same with the crystal system) and "a compound of {element}" for each
element of a compound; batches keep the polymorphs of a formula together (`--polymorph-batches 1`),
so that "tetragonal TiO2" and "orthorhombic TiO2" are negatives of each other. `--role-weight` weighs the element texts
against the eight group names, `--system-weight` each crystal against the seven "{system} symmetry" texts. A fraction
of the split is held out for the validation loss (`--valid-fraction`); the dataset's test split stays untouched.

The run is resumable: after every epoch the training state goes to `<out>.last.pt` (or `--state`), atomically; a new run
with the same `--out` continues from it, and `--max-minutes` stops cleanly after a time budget. At the end `--out` gets
only the delta over the packaged MiniLM (tuned layers in fp16 unless `--fp32`, crystal encoder, projections) for
`load_tuned_clip`, with the embeddings of five reference texts, the history, time, hardware, data and command.
"""
import json
import os
import shlex
import sys
import time
from dataclasses import asdict

import torch

from crystal_tutorial.texts import MiniLM, _package_folder, dataset_facts
from crystal_tutorial.text_tuning import (TextTuningConfig, TokenizedTexts, polymorph_pairs, save_tuned_clip,
                                          tuned_clip_learner, tuning_texts)
from _run import (add_config_options, config_overrides, fit_in_budget, load_split, resume_learner,
                  run_parser, run_setup, saved_or_new_config, say_written, split_for_training)

p = run_parser(__doc__, dataset='mp_mix_20', split='train')
p.add_argument('--templates', default=None, help='comma-separated templates (default: chapter 19 training templates, roles, roles_system)')
add_config_options(p, TextTuningConfig, skip=('templates',))
p.add_argument('--fp32', action='store_true', help='ship the tuned layers in float32 (default float16)')
args = p.parse_args()
if int(os.environ.get('WORLD_SIZE', '1')) > 1:       # torchrun: the polymorph batches would not survive sharding
    sys.exit('train_text_tuning.py trains in one process (its batches keep polymorphs together): start it without torchrun')

out, state_path, device, hardware = run_setup(args)
ds = load_split(args)
t0 = time.time()
facts = dataset_facts(ds)
print(f'facts of {len(ds):,} crystals in {time.time() - t0:.0f} s', flush=True)
train_idx, valid_idx, train_ds, valid_ds, data = split_for_training(args, ds, min_valid=2)

overrides = config_overrides(args, TextTuningConfig)
command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
elapsed, resume = 0.0, state_path.exists()
config = saved_or_new_config(state_path, TextTuningConfig, overrides, lambda: TextTuningConfig(**overrides))

tokenizer = MiniLM.from_folder(_package_folder()).tokenizer
t0 = time.time()
tr_facts = [facts[i] for i in train_idx.tolist()]
train = TokenizedTexts(train_ds, [tuning_texts(f, config.templates) for f in tr_facts], tokenizer,
                       [f['formula'] for f in tr_facts], config.max_tokens, seed=config.seed,
                       systems=[f.get('system') for f in tr_facts] if config.system_weight else None)
valid = (TokenizedTexts(valid_ds, [tuning_texts(facts[i], config.templates) for i in valid_idx.tolist()], tokenizer,
                        max_tokens=config.max_tokens, seed=1) if valid_ds is not None else None)
print(f'{len(train.vocab):,} distinct training texts tokenized in {time.time() - t0:.0f} s; '
      f'{len(train_ds):,} training and {len(valid_idx):,} validation crystals; device {device} ({hardware})', flush=True)

learn = tuned_clip_learner(config, train, valid, device=device)
if resume:
    elapsed = resume_learner(learn, state_path)
    if hasattr(learn.train_dl.batch_sampler, 'epoch'): learn.train_dl.batch_sampler.epoch = learn.epoch
sampler = learn.train_dl.batch_sampler
if hasattr(sampler, 'groups'):
    batches = list(sampler); sampler.epoch -= 1
    print(f'polymorph batches: {polymorph_pairs(batches, train.formulas):.1f} same-formula pairs per batch of {config.batch_size}')
print('configuration:', json.dumps(asdict(config)))
print(f'{sum(q.numel() for q in learn.model.parameters() if q.requires_grad):,} trainable parameters '
      f'({config.tuned_layers} of 6 BERT layers)', flush=True)

save = lambda sec: learn.save(state_path, keep_previous=True, config=asdict(config), elapsed=sec, data=data, command=command, hardware=hardware)
seconds, complete = fit_in_budget(learn, args, config.epochs, save, elapsed)
save_tuned_clip(out, learn.model.cpu(), config, half=not args.fp32, history=learn.history, epochs_done=learn.epoch,
                complete=complete, train_seconds=seconds, hardware=hardware, data=data, command=command,
                torch_version=str(torch.__version__))
say_written(out, learn, seconds, complete, state_path)
