"""A training script that logs with a bare ``torch.utils.tensorboard.SummaryWriter`` and prints nothing
the sweep could read: the quadratic bowl (x - 3)^2 + (y + 1)^2 minimised by gradient descent, its value
logged as ``loss/objective`` at every step (``add_scalar``), as many scripts do."""

import argparse

from torch.utils.tensorboard import SummaryWriter

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--momentum", type=float, default=0.0)
parser.add_argument("--logdir", required=True)
parser.add_argument("--steps", type=int, default=10)
args = parser.parse_args()

writer = SummaryWriter(log_dir=args.logdir)
x, y, vx, vy = 0.0, 0.0, 0.0, 0.0
for step in range(args.steps):
    vx = args.momentum * vx + 2 * (x - 3)
    vy = args.momentum * vy + 2 * (y + 1)
    x, y = x - args.lr * vx, y - args.lr * vy
    writer.add_scalar("loss/objective", (x - 3) ** 2 + (y + 1) ** 2, global_step=step)
    writer.add_text("note", f"step {step}", global_step=step)  # not a number: not a metric
writer.close()
