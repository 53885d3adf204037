"""A script written for W&B sweeps: it reads its hyperparameters from ``wandb.config`` (defaults given to
``wandb.init``, replaced by the sweep's values) and logs with ``wandb.log``; it has no command-line flags
at all. It prints the config it trained with, for the test to compare with the trial's values."""

import json
import math
import time

import wandb

defaults = {"learning_rate": 0.5, "optimizer": {"name": "sgd", "decay": 0.0}, "epochs": 4, "epoch_seconds": 0.0}
run = wandb.init(project="sweep-test", config=defaults)
config = wandb.config
print("CONFIG " + json.dumps(dict(config)), flush=True)
lr, decay = config.learning_rate, config.optimizer["decay"]
x = 5.0
for epoch in range(1, config.epochs + 1):
    x -= lr * 2 * x * (1 - decay)  # gradient descent on x^2
    wandb.log({"val": {"loss": x * x + 0.01 * math.log(1 + epoch)}, "epoch": epoch}, step=epoch)
    time.sleep(config.epoch_seconds)
run.finish()
print("finished", flush=True)
