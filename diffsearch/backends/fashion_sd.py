"""``--model fashion`` / ``--clip fashion``: a miniature Stable Diffusion trained here on Fashion-MNIST.

The model lives in ``diffsearch/models/fashion/`` (built by ``benchmarks/build_fashion_sd.py``):

  ``pipeline/``          a StableDiffusionPipeline directory (CLIP tokenizer, CLIPTextModel, AutoencoderKL,
                         UNet2DConditionModel, DDIM scheduler), loaded like any SD checkpoint
  ``judge_clip/``        a second CLIP (transformers ``CLIPModel``), trained separately: other random seed,
                         other image tower; the search's objective (``--clip fashion``)
  ``judge_classifier/``  a small CNN trained on real Fashion-MNIST, and the pixel attribute thresholds: only
                         for judging generated images, never used by the search

This module holds what the builder, the benchmark and the tests share: the caption grammar (class names,
some WordNet synonyms, brightness and size words measured on the pixels) and the judge classifier.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "fashion"
PIPELINE_DIR = MODEL_DIR / "pipeline"
JUDGE_CLIP_DIR = MODEL_DIR / "judge_clip"
JUDGE_CLASSIFIER_DIR = MODEL_DIR / "judge_classifier"
FASHION_DATA = Path("/usr/share/datasets/fashion-mnist")

# Fashion-MNIST's ten classes; the first name is the plain one, the others are WordNet 3.0 synonyms
# (lemmas of the same synset, or of its nearest hypernym / hyponym where the class is broader)
CLASS_NAMES: list[list[str]] = [
    ["t-shirt", "tee shirt", "top"],
    ["pair of trousers", "pair of pants", "pair of slacks"],
    ["pullover", "sweater", "jumper"],
    ["dress", "frock", "gown"],
    ["coat", "overcoat", "jacket"],
    ["sandal", "strappy sandal"],
    ["shirt", "button-down shirt"],
    ["sneaker", "gym shoe", "tennis shoe", "running shoe"],
    ["bag", "handbag", "purse", "pocketbook"],
    ["ankle boot", "boot", "bootee"],
]
PLAIN = [names[0] for names in CLASS_NAMES]
# attribute words: bin 0 (lowest third of its class), bin 2 (highest third); the middle third has none
BRIGHTNESS_WORDS = {0: ["dark"], 2: ["bright", "light"]}
SIZE_WORDS = {0: ["small"], 2: ["large", "big"]}
TEMPLATES = [
    "a photo of {}",
    "a picture of {}",
    "an image of {}",
    "{}",
    "a product photo of {}",
    "a black and white photo of {}",
]
PLAIN_TEMPLATE = "a photo of {}"
EMPTY_FRACTION = 0.1
INK = 0.2  # a pixel belongs to the garment above this grey level (0..1)


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def plain_prompt(label: int, template: str = PLAIN_TEMPLATE) -> str:
    """'a photo of a sneaker': the class's plain name, no attribute."""
    return template.format(article(PLAIN[label]))


def attribute_prompt(
    label: int, brightness: str | None = None, size: str | None = None, template: str = PLAIN_TEMPLATE
) -> str:
    words = [w for w in (brightness, size) if w]
    return template.format(article(" ".join(words + [PLAIN[label]])))


# ---- data ---------------------------------------------------------------------------------------------
def read_labels(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data[8:], dtype=np.uint8).astype(np.int64)


def load_fashion(split: str = "train", folder: Path = FASHION_DATA) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x 32 x 32 images (28 x 28 padded with 2 black pixels a side) and int labels."""
    from diffsearch.datasets.images import read_idx_images

    prefix = "train" if split == "train" else "t10k"
    images = read_idx_images(folder / f"{prefix}-images-idx3-ubyte.gz")[..., 0]
    labels = read_labels(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return np.pad(images, ((0, 0), (2, 2), (2, 2))), labels


# ---- attributes ---------------------------------------------------------------------------------------
def measure(images: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Brightness (mean grey level of the garment's pixels, 0..1) and size (fraction of the image the
    garment covers) of grey images: uint8 N x H x W, or float N x C x H x W in [0, 1]."""
    if isinstance(images, torch.Tensor):
        x = images.detach().float().cpu()
        x = x.mean(1) if x.ndim == 4 else x
        x = x.numpy()
    else:
        x = images.astype(np.float32) / 255.0
    ink = x > INK
    size = ink.mean(axis=(1, 2))
    brightness = (x * ink).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1)
    return brightness, size


def attribute_thresholds(images: np.ndarray, labels: np.ndarray) -> dict:
    """Per class, the terciles (1/3, 2/3) and median of brightness and size on the training images."""
    brightness, size = measure(images)
    out = {}
    for name, values in (("brightness", brightness), ("size", size)):
        out[name] = [[float(np.quantile(values[labels == c], q)) for q in (1 / 3, 0.5, 2 / 3)] for c in range(10)]
    return out


def bins(values: np.ndarray, labels: np.ndarray, thresholds: list[list[float]]) -> np.ndarray:
    """0 / 1 / 2: lowest, middle, highest third of the value's class."""
    t = np.asarray(thresholds)[labels]
    return (values > t[:, 0]).astype(np.int64) + (values > t[:, 2]).astype(np.int64)


# ---- captions -----------------------------------------------------------------------------------------
def caption(
    label: int, brightness_bin: int, size_bin: int, rng: random.Random, empty_fraction: float = EMPTY_FRACTION
) -> tuple[str, int, int]:
    """A random caption of an image and the attribute bins it states (-1: not stated); '' for about
    ``empty_fraction`` of the calls (the unconditional prompt of classifier-free guidance)."""
    if rng.random() < empty_fraction:
        return "", -1, -1
    said_b = brightness_bin if brightness_bin in BRIGHTNESS_WORDS and rng.random() < 0.6 else -1
    said_s = size_bin if size_bin in SIZE_WORDS and rng.random() < 0.6 else -1
    words = []
    if said_b >= 0:
        words.append(rng.choice(BRIGHTNESS_WORDS[said_b]))
    if said_s >= 0:
        words.append(rng.choice(SIZE_WORDS[said_s]))
    name = rng.choice(CLASS_NAMES[label]) if rng.random() < 0.5 else PLAIN[label]
    return rng.choice(TEMPLATES).format(article(" ".join(words + [name]))), said_b, said_s


# ---- judge classifier ---------------------------------------------------------------------------------
class FashionClassifier(nn.Module):
    """A small CNN on 32 x 32 grey images in [0, 1] (colour input is averaged to grey)."""

    def __init__(self):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.net = nn.Sequential(
            *block(1, 16),
            *block(16, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            *block(32, 32),
            nn.MaxPool2d(2),
            *block(32, 64),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(64 * 16, 10),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[1] != 1:
            x = x.mean(1, keepdim=True)
        return self.net((x - 0.29) / 0.35)


class Judge:
    """The classifier and the attribute thresholds: what a generated image shows, measured without CLIP."""

    def __init__(self, directory: Path = JUDGE_CLASSIFIER_DIR):
        from safetensors.torch import load_file

        self.model = FashionClassifier()
        state = {k: v.float() for k, v in load_file(str(directory / "model.safetensors")).items()}
        self.model.load_state_dict(state)
        self.model.eval()
        self.thresholds = json.loads((directory / "attributes.json").read_text())

    @torch.no_grad()
    def classify(self, images: torch.Tensor, batch: int = 500) -> np.ndarray:
        return torch.cat([self.model(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)]).numpy()

    def attribute_sides(self, images, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """+1 above the class's median, 0 below: brightness and size."""
        brightness, size = measure(images)
        med_b = np.asarray(self.thresholds["brightness"])[labels, 1]
        med_s = np.asarray(self.thresholds["size"])[labels, 1]
        return (brightness > med_b).astype(np.int64), (size > med_s).astype(np.int64)
