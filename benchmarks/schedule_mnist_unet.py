"""Train the small MNIST UNet that benchmarks/schedule_search.py searches schedules for, once, and cache it.

It is the image trainer of ``diffsearch hparams --dataset mnist`` (backends/unet_trainer.py: a diffusers
``UNet2DModel``, the thesis study's baseline settings of the images space) at width 0.25, saved as a diffusers
``DDPMPipeline`` directory (unet + scheduler), which is what ``diffsearch schedule --model DIR`` reads.

    python benchmarks/schedule_mnist_unet.py [--out DIR] [--epochs 3] [--train-images 12000] [--resolution 16]

16 x 16 pixels (``--resolution 16`` of the trainer) keep the training and the benchmark's sampling within
minutes on 2 shared CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

CACHE = Path(os.environ.get("DIFFSEARCH_CACHE", Path.home() / ".cache" / "diffsearch")) / "schedule-mnist-unet"
# the benchmark's second UNet (``--models mnist-long``): the same network and settings, 10 epochs of all 60,000
# training images (17 times the first one's training), to see whether its few-step samplers fall further
# behind its many-step sampler
LONGER = {"out": CACHE.with_name("schedule-mnist-unet-60k-10ep"), "epochs": 10, "train_images": 60000}


def build(
    out: Path = CACHE,
    epochs: int = 3,
    train_images: int = 12000,
    width: float = 0.25,
    resolution: int = 16,
    seed: int = 0,
) -> Path:
    """The cached pipeline directory (trained here when missing)."""
    if (out / "model_index.json").is_file():
        return out
    import torch
    from diffusers import DDPMPipeline

    from diffsearch.backends.unet_trainer import train_unet
    from diffsearch.datasets.images import load_image_data
    from diffsearch.spaces.training import get_space

    data = load_image_data("mnist", resolution, train_images)
    config = {**get_space("images").baseline(), "num_train_timesteps": 1000}
    start = time.perf_counter()
    trained = train_unet(config, data.train_tensor(), epochs, seed, width, "cpu")
    seconds = time.perf_counter() - start
    pipe = DDPMPipeline(unet=trained.model.eval(), scheduler=trained.noise_scheduler)
    tmp = out.with_name(out.name + ".tmp")
    pipe.save_pretrained(tmp)
    (tmp / "training.json").write_text(
        json.dumps(
            {
                "dataset": "mnist",
                "resolution": resolution,
                "train_images": train_images,
                "epochs": epochs,
                "width": width,
                "seed": seed,
                "config": config,
                "seconds": round(seconds, 1),
                "epoch_losses": trained.epoch_losses,
                "threads": torch.get_num_threads(),
                "note": f"{torch.get_num_threads()} CPU threads",
            },
            indent=2,
        )
    )
    tmp.replace(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=CACHE)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-images", type=int, default=12000)
    p.add_argument("--resolution", type=int, default=16)
    a = p.parse_args()
    path = build(a.out, a.epochs, a.train_images, resolution=a.resolution)
    print(path, (path / "training.json").read_text())


if __name__ == "__main__":
    main()
