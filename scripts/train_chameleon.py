"""Train a text-conditioned crystal diffusion model (notebook 25, Chemeleon-style) on mp_mix_20.

    python scripts/train_chameleon.py --kind composition --epochs 30 \\
        --out crystal_tutorial/weights/chameleon_composition.pt
    python scripts/train_chameleon.py --kind general --epochs 30 \\
        --out crystal_tutorial/weights/chameleon_general.pt

Every crystal of the training split gets texts generated from its data (chapter 19's templates: composition forms for
`--kind composition`, every training template for `--kind general`); each epoch pairs it with one of them, drawn at random.
The texts go through the shipped Crystal CLIP text side (frozen all-MiniLM-L6-v2, then the learned projection; with
`--tuned`, chapter 21's CLIP whose top MiniLM layers were fine-tuned) to unit condition vectors, computed once. The
denoiser is chapter 11's de novo (DNG) CrystalDiffusion with `cond_dim` set, trained with the condition replaced by the
null vector with probability `p_uncond`, for classifier-free guidance.

Every field of `CrystalDiffusionConfig` is an option (--hidden 256 --n-layers 4 --batch-size 64 --p-uncond 0.1 ...).
The run is resumable: after every epoch the training state goes to `<out>.last.pt` (or `--state`), a new run with the same
`--out` continues from it, and `--max-minutes` stops cleanly after a time budget. `--out` gets a self-contained checkpoint
for `Chameleon.load`: denoiser weights and configuration, the Crystal CLIP used for the texts, the templates, history,
training time, hardware, data and command.
"""
import json
import shlex
import sys
import time
from dataclasses import asdict, fields, replace

import torch

from crystal_tutorial.chameleon import PROMPT_TEMPLATES, chameleon_learner, conditioned_pairs, save_chameleon
from crystal_tutorial.clip import load_crystal_clip
from crystal_tutorial.text_tuning import load_tuned_clip
from crystal_tutorial.texts import TextEmbeddingCache, dataset_facts
from crystal_tutorial.core import load_checkpoint, set_seed
from crystal_tutorial.crystal_diffusion import CrystalDiffusionConfig, config_for_data
from _run import (add_config_options, fit_in_budget, load_split, resume_learner, run_parser, run_setup,
                  say_written, split_for_training)
DATA_FITTED = ('lattice_scale', 'lattice_clip', 'max_atoms')
DEFAULTS = dict(task='dng', batch_size=64, epochs=30, step_lr=1e-5, p_uncond=0.1)

p = run_parser(__doc__, dataset='mp_mix_20', split='train', valid_fraction=0.03)
p.add_argument('--kind', choices=sorted(PROMPT_TEMPLATES), required=True, help='which prompts to train on')
p.add_argument('--clip', default='mp_mix_20', help='shipped Crystal CLIP name or checkpoint path whose text side makes the conditions')
p.add_argument('--tuned', action='store_true', help="--clip names chapter 21's tuned Crystal CLIP (load_tuned_clip)")
add_config_options(p, CrystalDiffusionConfig, DATA_FITTED, DEFAULTS)
args = p.parse_args()

out, state_path, device, hardware = run_setup(args)
ds = load_split(args)
facts = dataset_facts(ds)
train_idx, valid_idx, train_ds, valid_ds, data = split_for_training(args, ds)
n_valid = len(valid_idx)
templates = PROMPT_TEMPLATES[args.kind]
data['templates'] = list(templates)
print(f'{args.dataset}/{args.split}: {len(train_ds):,} training and {n_valid:,} validation crystals; device {device} ({hardware})')

clip = (load_tuned_clip if args.tuned else load_crystal_clip)(args.clip, device='cpu')
cache = TextEmbeddingCache()
t0 = time.time()
train_pairs = conditioned_pairs(train_ds, [facts[i] for i in train_idx.tolist()], templates, clip, cache, seed=0)
valid_pairs = conditioned_pairs(valid_ds, [facts[i] for i in valid_idx.tolist()], templates, clip, cache, seed=1) if valid_ds is not None else None
cache.save()
print(f'{len(train_pairs.vocab):,} distinct training texts → condition vectors in {time.time() - t0:.0f} s')

overrides = {f.name: getattr(args, f.name) for f in fields(CrystalDiffusionConfig) if getattr(args, f.name) is not None}
command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
elapsed, resume = 0.0, state_path.exists()
if resume:
    config = CrystalDiffusionConfig.from_dict(load_checkpoint(state_path)['config'])
    if 'epochs' in overrides: config = replace(config, epochs=overrides['epochs'])
else:
    set_seed(overrides.get('seed', 0))
    config = config_for_data(train_ds, **{**DEFAULTS, **overrides, 'cond_dim': clip.embed_dim})

learn = chameleon_learner(config, train_pairs, valid_pairs, device=device)
model = learn.model
if resume:
    elapsed = resume_learner(learn, state_path)
learn.distribute(seed=config.seed)                      # under torchrun: a shard of the data per process
print('configuration:', json.dumps(asdict(config)))
print(f'{sum(q.numel() for q in model.parameters()):,} parameters')

save = lambda sec: learn.save(state_path, keep_previous=True, config=asdict(config), elapsed=sec)
seconds, complete = fit_in_budget(learn, args, config.epochs, save, elapsed)
save_chameleon(out, learn.model, clip, args.kind, templates, history=learn.history, epochs_done=learn.epoch, complete=complete, train_seconds=seconds, hardware=hardware,
                data=data, command=command, torch_version=str(torch.__version__))
say_written(out, learn, seconds, complete, state_path)
