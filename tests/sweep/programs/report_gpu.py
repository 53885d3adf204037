"""Reports the device it was given: CUDA_VISIBLE_DEVICES as the metric ``gpu`` (the sweep's --gpus tests).

With ``--pair_dir``, it first waits until a program started by another worker process has run, so a test
of two workers knows that both ran trials.
"""

import argparse
import json
import os
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--pair_dir")
args, _ = parser.parse_known_args()

if args.pair_dir:
    folder = Path(args.pair_dir)
    folder.mkdir(parents=True, exist_ok=True)
    mine = f"{os.getppid()}-"  # the worker process that started this program
    (folder / f"{mine}{os.getpid()}").touch()
    deadline = time.time() + 300
    while not any(not p.name.startswith(mine) for p in folder.iterdir()):
        if time.time() > deadline:
            raise SystemExit("no program of another worker ran within 300 s")
        time.sleep(0.1)
print(json.dumps({"step": 1, "gpu": int(os.environ.get("CUDA_VISIBLE_DEVICES", "-1"))}), flush=True)
