"""Speed of the MNIST diffusion model on this machine: training steps per second, DDPM and DDIM images per second.

    python benchmarks/bench_diffusion.py [--device cpu|cuda] [--bs 64] [--n 64] [--quick]

Prints one line per figure. Uses the shipped weights when they exist (the sampling speed does not depend on the
weights, only on the network size), otherwise a freshly initialised network of the same size.
"""
import argparse
import time

import torch

from crystal_tutorial.core import get_device, set_seed
from crystal_tutorial.diffusion import (MNIST_DIFFUSION, WEIGHTS_DIR, ddim_sample, ddpm_sample, diffusion_loss,
                                        load_mnist_diffusion, mnist_diffusion)

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--device', default=None)
p.add_argument('--bs', type=int, default=64, help='training batch size')
p.add_argument('--n', type=int, default=64, help='images per sampling batch')
p.add_argument('--quick', action='store_true', help='fewer repeats (a smoke test of the script)')
args = p.parse_args()

set_seed(0)
device = get_device(args.device)
sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
shipped = (WEIGHTS_DIR / MNIST_DIFFUSION).exists()
model = load_mnist_diffusion(device=device) if shipped else mnist_diffusion().to(device)
n_params = sum(p.numel() for p in model.parameters())
print(f'device {device}, {torch.get_num_threads()} CPU threads, U-Net {n_params / 1e6:.2f} M parameters '
      f'({"shipped weights" if shipped else "random weights"}), T = {model.n_steps}')

# training steps per second
model.train()
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
x = torch.rand(args.bs, 1, 28, 28, device=device)
y = torch.randint(0, 10, (args.bs,), device=device)
n_train = 3 if args.quick else 20
for i in range(n_train + 2):
    if i == 2: sync(); t0 = time.time()         # two warm-up steps
    loss = diffusion_loss(model, (x, y)); opt.zero_grad(); loss.backward(); opt.step()
sync(); dt = time.time() - t0
print(f'training: {n_train / dt:.2f} steps/s at batch {args.bs} ({n_train * args.bs / dt:.0f} images/s)')

# sampling
model.eval()
labels = torch.arange(args.n) % 10
def timed(fn):
    sync(); t0 = time.time(); fn(); sync(); return time.time() - t0
ddpm_steps = model.n_steps
if args.quick:   # time 50 ancestral steps and scale: every DDPM step costs the same
    dt = timed(lambda: ddim_sample(model, args.n, steps=50, eta=1.0, labels=labels, guidance_scale=0)) * model.n_steps / 50
else:
    dt = timed(lambda: ddpm_sample(model, args.n, labels=labels, guidance_scale=0))
print(f'DDPM {ddpm_steps} steps, unconditional: {args.n / dt:.2f} images/s ({dt:.1f} s for {args.n})')
for steps in (100, 20):
    for w in (0.0, 3.0):
        dt = timed(lambda: ddim_sample(model, args.n, steps=steps, labels=labels, guidance_scale=w))
        kind = 'unconditional' if w == 0 else f'guided w={w:g} (2 calls/step)'
        print(f'DDIM {steps:4d} steps, {kind}: {args.n / dt:.1f} images/s ({dt:.2f} s for {args.n})')
