"""Noise search on a real pipeline on a GPU: peak memory and seconds per NFE of best-of-N and zero-order.

Weights are not downloaded here: pass a diffusers pipeline directory (``--model``; SD 1.x at 512 px, SDXL at
1024 px in benchmarks/gpu_check.sh). The verifier is the pixel contrast of the image (a stand-in that
needs no second model: memory and time are the sampler's), unless ``--reward`` and ``--clip`` name one.
Writes ``--out``.{md,json}.

    python benchmarks/noise_gpu.py --model ~/sd-v1-5 --size 512 --out benchmarks/results/noise_gpu_sd15
    python benchmarks/noise_gpu.py --model ~/sdxl-base --size 1024 --dtype float16 --out benchmarks/results/noise_gpu_sdxl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import optuna
import torch

from diffsearch.backends.stable_diffusion import load_backend
from diffsearch.objectives.ensemble import Verifier
from diffsearch.objectives.rewards import Reward
from diffsearch.searchers.noise.base import NoiseSearchSettings
from diffsearch.searchers.noise.registry import NOISE_SEARCHERS
from diffsearch.tasks.noise_task import NoiseTask


class Contrast(Reward):
    name = "contrast"

    def score(self, images, prompt):
        return images.flatten(1).float().std(dim=1) * 100


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--generations", type=int, default=4, help="budget in generations")
    p.add_argument("--searchers", default="best-of-n,zero-order")
    p.add_argument("--dtype", default="float16")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    backend = load_backend(args.model, "cuda", args.dtype, steps=args.steps, size=args.size)
    verifier = Verifier([Contrast()])
    rows = []
    for searcher in args.searchers.split(","):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        g = backend.steps * backend.passes_per_step()
        task = NoiseTask(
            backend, verifier, "a red boat on a calm lake", None, args.generations * g, 0, batch=args.batch
        )
        start = time.perf_counter()
        task.evaluate([task.user])
        NOISE_SEARCHERS.get(searcher)().search(task, NoiseSearchSettings())
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows.append(
            {
                "searcher": searcher,
                "nfe": task.forward_nfe,
                "seconds": seconds,
                "seconds_per_nfe": seconds / task.forward_nfe,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            }
        )
    gpu = torch.cuda.get_device_name(0)
    lines = [
        f"# Noise search on {gpu}: {args.model} at {args.size} px, {args.steps} steps, {args.dtype}, batch {args.batch}",
        "",
        "| searcher | NFE | seconds | s / NFE | peak GiB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['searcher']} | {r['nfe']} | {r['seconds']:.1f} | {r['seconds_per_nfe']:.3f} | {r['peak_gib']:.1f} |"
        for r in rows
    ]
    Path(args.out).with_suffix(".json").write_text(json.dumps({"gpu": gpu, "args": vars(args), "rows": rows}, indent=2))
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
