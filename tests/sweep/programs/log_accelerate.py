"""A training script that logs the way the diffusers examples do: through accelerate's TensorBoard tracker
(``Accelerator(log_with="tensorboard")``, ``accelerator.log``), nothing on stdout but its own progress.

Linear regression by gradient descent, in torch; the validation loss of each step goes to TensorBoard as
``val_loss`` (and the training loss as ``train_loss``). It prints ``finished`` when it ran to its end.
"""

import argparse
import time

import torch
from accelerate import Accelerator

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, default=0.05)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--step_seconds", type=float, default=0.0)
parser.add_argument("--output_dir", default="regression-output")
args = parser.parse_args()

accelerator = Accelerator(log_with="tensorboard", project_dir=args.output_dir)
accelerator.init_trackers("regression", config=vars(args))
generator = torch.Generator().manual_seed(0)
w_true = torch.randn(8, generator=generator)
x_train, x_val = torch.randn(256, 8, generator=generator), torch.randn(128, 8, generator=generator)
y_train, y_val = x_train @ w_true, x_val @ w_true
w = torch.zeros(8, requires_grad=True)
optimizer = torch.optim.SGD([w], lr=args.learning_rate)
for step in range(1, args.steps + 1):
    loss = torch.mean((x_train @ w - y_train) ** 2)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        val_loss = torch.mean((x_val @ w - y_val) ** 2).item()
    accelerator.log({"train_loss": loss.item(), "val_loss": val_loss}, step=step)
    print(f"step {step} done", flush=True)
    time.sleep(args.step_seconds)
accelerator.end_training()
print("finished", flush=True)
