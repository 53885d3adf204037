"""Reports what it finds about the interpreter it runs in (the tests of ``preload``: trials forked from a warm
interpreter must look like ``python report_interpreter.py --args`` started afresh).

The metric ``draw`` is a random number: two trials that share a random state report the same one.
"""

import sys

PRELOADED = sorted(name for name in ("wave", "warm_up", "torch") if name in sys.modules)  # before any import here

import json
import os
import random

import torch

x = torch.randn(256, 256)
for _ in range(4):  # a parallel region: it would hang if the warm interpreter had started OpenMP's threads
    x = torch.tanh(x @ x / 16)
print(
    json.dumps(
        {
            "step": 1,
            "draw": random.random(),
            "torch_draw": float(torch.rand(())),
            "preloaded": PRELOADED,
            "name": __name__,
            "argv": sys.argv,
            "cwd": os.getcwd(),
            "path0": sys.path[0],
            "threads": torch.get_num_threads(),
            "trial": os.environ.get("DIFFSEARCH_TRIAL"),
        }
    ),
    flush=True,
)
if "--exit_code=3" in sys.argv:
    sys.exit(3)  # a failed trial, by sys.exit as a trainer ends
