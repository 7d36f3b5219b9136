"""Speed of the crystal diffusion model (notebook 11): training steps per second and crystals sampled per second.

    python benchmarks/bench_crystal_diffusion.py [--dataset perov_5|mp_mix_20|carbon_24|toy] [--task csp|dng]
        [--size shipped|small|tiny] [--bs 128] [--n 100] [--steps 1000] [--device cpu|cuda] [--quick]

Prints one line per figure. The network is freshly initialised (speed does not depend on the weights), with the size of the
shipped models (`--size shipped`, the CrystalDiffusionConfig defaults), the notebook's full-mode model (`small`) or its fast-mode
model (`tiny`). Training batches are real crystals of the dataset (the toy dataset when the local copies are absent).
Sampling uses DiffCSP's predictor-corrector scheme, two network calls per step; `--quick` times 50 steps and scales to `--steps`.
"""
import argparse
import time
import warnings

import torch

from crystal_tutorial.core import get_device, set_seed
from crystal_tutorial.crystal_diffusion import CrystalDiffusion, config_for_data, crystal_diffusion_loss
from crystal_tutorial.crystal_sampling import sample_crystals
from crystal_tutorial.crystal_data import DatasetError, datasets_root, load_dataset

SIZES = {'shipped': dict(), 'small': dict(hidden=128, n_layers=3, n_freq=8, time_dim=32),
         'tiny': dict(hidden=64, n_layers=3, n_freq=6, time_dim=32)}
SPLITS = {'perov_5': 'val', 'carbon_24': 'val', 'mp_mix_20': 'val', 'toy': 'train'}

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--dataset', default='perov_5', choices=list(SPLITS))
p.add_argument('--task', default='csp', choices=['csp', 'dng'])
p.add_argument('--size', default='shipped', choices=list(SIZES))
p.add_argument('--device', default=None)
p.add_argument('--bs', type=int, default=128, help='training batch size (crystals)')
p.add_argument('--n', type=int, default=100, help='crystals per sampling batch')
p.add_argument('--steps', type=int, default=1000, help='sampling steps')
p.add_argument('--quick', action='store_true', help='fewer repeats, 50 sampling steps scaled up (a smoke test)')
args = p.parse_args()

set_seed(0)
warnings.filterwarnings('ignore', message='.*degenerate')     # random weights can end on a flat cell; speed is what counts here
device = get_device(args.device)
sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
try:
    if args.dataset != 'toy' and datasets_root() is None: raise DatasetError('no local copies')
    ds = load_dataset(args.dataset, SPLITS[args.dataset], limit=2000, verbose=False)
except DatasetError:
    print(f'{args.dataset} is not available here: using the toy dataset'); args.dataset = 'toy'
    ds = load_dataset('toy')
config = config_for_data(ds, task=args.task, **SIZES[args.size])
model = CrystalDiffusion(config).set_data_stats(ds).to(device)
n_params = sum(q.numel() for q in model.parameters())
print(f'device {device}, {torch.get_num_threads()} CPU threads; {args.task.upper()} model "{args.size}" '
      f'(hidden {config.hidden}, {config.n_layers} layers): {n_params / 1e6:.2f} M parameters, {n_params * 4 / 2**20:.1f} MB; '
      f'{args.dataset}: {ds.num_atoms.float().mean():.1f} atoms per cell on average')

# training steps per second
model.train()
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
n_train = 3 if args.quick else 20
g = torch.Generator().manual_seed(0)
batches = [(ds.batch(torch.randint(0, len(ds), (args.bs,), generator=g)),) for _ in range(4)]
for i in range(n_train + 2):
    if i == 2: sync(); t0 = time.time()              # two warm-up steps
    loss = crystal_diffusion_loss(model, batches[i % 4])['loss']
    opt.zero_grad(); loss.backward(); opt.step()
sync(); dt = time.time() - t0
print(f'training: {n_train / dt:.2f} steps/s at batch {args.bs} ({n_train * args.bs / dt:.0f} crystals/s)')

# sampling
steps = min(50, args.steps) if args.quick else args.steps
idx = torch.randint(0, len(ds), (args.n,), generator=g)
kwargs = dict(compositions=[ds[int(i)] for i in idx]) if args.task == 'csp' else dict(num_atoms=ds.num_atoms[idx])
config_steps = config.n_steps
sync(); t0 = time.time()
sample_crystals(model, steps=steps, generator=torch.Generator().manual_seed(0), **kwargs)
sync(); dt = (time.time() - t0) * args.steps / steps
print(f'sampling, predictor-corrector, {args.steps} steps (2 network calls each): {args.n / dt:.2f} crystals/s '
      f'({dt:.1f} s for {args.n}{", scaled from " + str(steps) + " steps" if steps != args.steps else ""})')
