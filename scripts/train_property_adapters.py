"""Fine-tune MatterGen-style adapters (notebook 18) on a pretrained DNG diffusion model for one property.

    python scripts/train_property_adapters.py --epochs 12 --max-minutes 60 --threads 1 \\
        --out crystal_tutorial/weights/adapters_mp_mix_20_dng_band_gap.pt

The pretrained model (`--base`, a shipped crystal diffusion model) stays frozen; only the adapters learn, on the
crystals of the split whose property (`--prop`) is known. The held-out validation crystals are those the base
model's training held out (the same permutation, `--valid-fraction` 0.05). The same run fits the independent judge
of the notebook: a composition-only regressor of the property, with its mean absolute error on those crystals.

Resumable: after every epoch the training state goes to `<out>.last.pt` (or `--state`), and the same command
continues from it. `--out` gets the adapters only (the base model is named and checked by SHA-256), the judge,
the loss history, the time, the hardware and the command.
"""
import shlex
import sys

import torch

from crystal_tutorial.adapters import (add_adapters, adapter_learner, element_fractions, fit_regressor,
                                       save_adapters, with_property)
from crystal_tutorial.crystal_diffusion import load_crystal_diffusion
from _run import (fit_in_budget, load_split, resume_learner, run_parser, run_setup, say_written,
                  split_for_training)

p = run_parser(__doc__, dataset='mp_mix_20', split='train')
p.add_argument('--base', default='mp_mix_20_dng', help='the shipped unconditional model to adapt')
p.add_argument('--prop', default='band_gap', help='the property column of the dataset')
p.add_argument('--low', type=float, default=0.0, help='lowest value of the property the embedding covers')
p.add_argument('--high', type=float, default=6.0, help='highest value (larger ones are read as this)')
p.add_argument('--epochs', type=int, default=12)
p.add_argument('--batch-size', type=int, default=64)
p.add_argument('--lr', type=float, default=1e-3)


def judge_mae(reg, ds, prop) -> float:
    "Mean absolute error of the regressor on the crystals of `ds` with a known property."
    ds = with_property(ds, prop)
    with torch.no_grad(): pred = reg(element_fractions(ds.atom_types, ds.num_atoms))
    return float((pred - torch.as_tensor(ds.props[prop]).float()).abs().mean())


def main():
    args = p.parse_args()
    out, state_path, device, hardware = run_setup(args)
    ds = load_split(args)
    if args.prop not in ds.props:
        p.error(f"{args.dataset}/{args.split} has no property {args.prop!r}: choose one of {sorted(ds.props)}")
    *_, train_ds, valid_ds, data = split_for_training(args, ds)
    command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
    model = add_adapters(load_crystal_diffusion(args.base), args.prop, args.low, args.high)
    learn = adapter_learner(model, train_ds, valid_ds, args.epochs, args.batch_size, args.lr, device=device)
    print(f'{len(learn.train_dl.dataset):,} training crystals with {args.prop}; {device} ({hardware}); '
          f'{sum(q.numel() for q in model.parameters() if q.requires_grad):,} trainable parameters')
    elapsed = resume_learner(learn, state_path) if state_path.exists() else 0.0
    learn.distribute()                                  # under torchrun: a shard of the data per process
    save = lambda sec: learn.save(state_path, keep_previous=True, elapsed=sec)
    seconds, complete = fit_in_budget(learn, args, args.epochs, save, elapsed)
    reg = fit_regressor(train_ds, args.prop)
    mae = judge_mae(reg, valid_ds, args.prop)
    print(f'judge: mean absolute error {mae:.3f} on {len(with_property(valid_ds, args.prop)):,} held-out crystals')
    save_adapters(out, model, args.base, reg, judge_mae=mae, history=learn.history, epochs_done=learn.epoch,
                  complete=complete, train_seconds=seconds, hardware=hardware, command=command, data=data)
    say_written(out, learn, seconds, complete, state_path)


if __name__ == '__main__':
    main()
