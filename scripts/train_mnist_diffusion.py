"""Train the class-conditional MNIST diffusion model that ships in crystal_tutorial/weights/mnist_diffusion.pt.

    python scripts/train_mnist_diffusion.py [--epochs 40] [--out crystal_tutorial/weights/mnist_diffusion.pt]

A checkpoint is written after every epoch to checkpoints/mnist_diffusion.last.pt and the run resumes from it, so a
long CPU run can be stopped and restarted. The final file holds the weights, the configuration, the per-epoch losses,
the wall time and the hardware: what the model card and notebook 04 report.
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from crystal_tutorial.autoencoders import load_mnist
from crystal_tutorial.core import get_device, save_checkpoint, set_seed
from crystal_tutorial.diffusion import mnist_diffusion_learner

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--epochs', type=int, default=40)
p.add_argument('--bs', type=int, default=64)
p.add_argument('--lr', type=float, default=1e-3)
p.add_argument('--out', default='crystal_tutorial/weights/mnist_diffusion.pt')
p.add_argument('--device', default=None)
args = p.parse_args()
if int(os.environ.get('WORLD_SIZE', '1')) > 1:
    sys.exit('train_mnist_diffusion.py trains in one process (a few minutes on a CPU): start it without torchrun')

set_seed(0)
device = get_device(args.device)
hardware = (torch.cuda.get_device_name(device) if device.type == 'cuda'
            else f'{platform.machine()} CPU, {torch.get_num_threads()} threads')
mnist = load_mnist()
learn = mnist_diffusion_learner(mnist, epochs=args.epochs, bs=args.bs, lr=args.lr, device=device)
last, elapsed = Path('checkpoints/mnist_diffusion.last.pt'), 0.0
if last.exists():
    extra = learn.load(last)
    elapsed = extra.get('elapsed', 0.0)
    print(f'resuming from {last} after epoch {learn.epoch}')
t0 = time.time()
learn.cbs.append(lambda learn: learn.save(last, keep_previous=True, elapsed=elapsed + time.time() - t0))
learn.fit(args.epochs - learn.epoch, progress=False)
for h in learn.history: print(h)
seconds = elapsed + time.time() - t0
save_checkpoint(args.out, learn.model, config=learn.config, history=learn.history, train_seconds=seconds,
                hardware=hardware, data=f'MNIST ({mnist.source}): {len(mnist.x_train)} train / {len(mnist.x_valid)} valid digits',
                command='python scripts/train_mnist_diffusion.py ' + ' '.join(f'--{k} {v}' for k, v in vars(args).items() if v is not None))
print(f'wrote {args.out} after {seconds / 60:.1f} min')
