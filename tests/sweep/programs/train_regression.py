"""A real, tiny training program for the sweep tests: linear regression by gradient descent (numpy).

It reports the validation loss after every step with ``diffsearch.report`` (or, with --plain-print, a
plain ``print`` of the same JSON line). ``--mode`` makes it misbehave the ways a real trainer does.
"""

import argparse
import json
import sys
import time

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, default=0.05)
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum"])
parser.add_argument("--momentum", type=float)
parser.add_argument("--mode", default="ok", choices=["ok", "crash", "hang", "silent"])
parser.add_argument("--step_seconds", type=float, default=0.0)
parser.add_argument("--plain_print", default="False")
args = parser.parse_args()

if args.optimizer == "sgd" and args.momentum is not None:
    sys.exit("--momentum given to plain SGD: an inactive parameter reached the command line")
if args.mode == "hang":
    time.sleep(600)
if args.mode == "crash":
    print("starting", flush=True)
    raise SystemExit("RuntimeError: CUDA error: an illegal memory access was encountered")

rng = np.random.default_rng(0)
w_true = rng.normal(size=8)
x_train, x_val = rng.normal(size=(256, 8)), rng.normal(size=(128, 8))
y_train = x_train @ w_true + 0.1 * rng.normal(size=256)
y_val = x_val @ w_true + 0.1 * rng.normal(size=128)

w, velocity = np.zeros(8), np.zeros(8)
beta = args.momentum if args.optimizer == "momentum" else 0.0
for step in range(1, args.steps + 1):
    gradient = 2 * x_train.T @ (x_train @ w - y_train) / len(y_train)
    velocity = beta * velocity + gradient
    w = w - args.learning_rate * velocity
    loss = float(np.mean((x_val @ w - y_val) ** 2))
    print(f"step {step}: training", flush=True)  # an ordinary log line between the reports
    if args.mode == "silent":
        continue
    if args.plain_print == "True":
        print(json.dumps({"step": step, "val_loss": loss}), flush=True)
    else:
        from diffsearch import report

        report(step=step, val_loss=loss)
    time.sleep(args.step_seconds)
