"""The Fashion-MNIST pipeline with its UNet trained longer, for benchmarks/schedule_search.py only.

``--model fashion`` ships a UNet trained 1,800 steps on 30,000 images; on it every sampler at 6 NFE is within
8 % of the 50-step sampler's FID, which leaves a schedule search little to find. This script continues that
UNet (same network, same captions, same VAE and text encoder) for ``--steps`` more steps on all 60,000
training images and saves a copy of the pipeline with the new UNet under the cache. The shipped pipeline is
not touched: every prompt and noise figure is measured on it.

    python benchmarks/schedule_fashion_unet.py [--steps 6000] [--out DIR]

Resumable in the coarse sense: a finished pipeline directory is reused; an interrupted run starts again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

CACHE = Path(os.environ.get("DIFFSEARCH_CACHE", Path.home() / ".cache" / "diffsearch"))
LONGER = {"out": CACHE / "schedule-fashion-unet-longer", "steps": 6000}


def build(out: Path = LONGER["out"], steps: int = LONGER["steps"], threads: int = 2) -> Path:
    """The pipeline directory with the longer-trained UNet (trained here when missing)."""
    if (out / "model_index.json").is_file():
        return out
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    import build_fashion_sd as b
    from diffsearch.backends.fashion_sd import PIPELINE_DIR

    torch.set_num_threads(threads)
    vae = AutoencoderKL.from_pretrained(str(PIPELINE_DIR / "vae"), torch_dtype=torch.float32).eval()
    text_encoder = CLIPTextModel.from_pretrained(str(PIPELINE_DIR / "text_encoder"), dtype=torch.float32).eval()
    shipped = UNet2DConditionModel.from_pretrained(str(PIPELINE_DIR / "unet"), torch_dtype=torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(PIPELINE_DIR, tmp)
    shutil.rmtree(tmp / "unet")
    start = time.perf_counter()
    # a warm restart at half the first run's peak rate: the shipped weights are a good start, not a random one
    minutes = b.fit_unet(
        b.Data(),
        vae,
        text_encoder,
        tmp / "unet",
        steps,
        judge_dir=PIPELINE_DIR.parent / "judge_classifier",
        images=60_000,
        start=shipped,
        peak_lr=1e-3,
    )
    (tmp / "training.json").write_text(
        json.dumps(
            {
                "dataset": "fashion-mnist",
                "starts_from": "the shipped --model fashion UNet (1,800 steps on 30,000 images)",
                "extra_steps": steps,
                "batch": 64,
                "train_images": 60_000,
                "minutes": round(minutes, 1),
                "seconds": round(time.perf_counter() - start, 1),
            },
            indent=1,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    p.add_argument("--out", default=str(LONGER["out"]))
    p.add_argument("--steps", type=int, default=LONGER["steps"], help="extra training steps (%(default)s)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    print(build(Path(a.out), a.steps, a.threads))


if __name__ == "__main__":
    main()
