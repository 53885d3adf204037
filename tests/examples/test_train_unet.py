"""examples/train_unet.py (a diffusers training reporting FID lines) and examples/sweep.yaml (its sweep)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPT = EXAMPLES / "train_unet.py"
TINY = [
    "--resolution",
    "8",
    "--block_out_channels",
    "8,16",
    "--max_train_samples",
    "64",
    "--train_batch_size",
    "32",
    "--num_epochs",
    "2",
    "--num_fid_samples",
    "4",
    "--eval_batch_size",
    "4",
    "--ddpm_num_inference_steps",
    "3",
]


def _load_script():
    spec = importlib.util.spec_from_file_location("train_unet_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_unet():
    return _load_script()


def _reports(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow  # a new interpreter, the Inception network and 12 images through it
def test_a_tiny_run_on_a_folder_prints_one_fid_line_per_epoch(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(20):  # nested folders: the folder is read recursively
        folder = tmp_path / "images" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    env = {**os.environ, "DIFFSEARCH_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--train_data_dir",
            str(tmp_path / "images"),
            *TINY,
            "--use_ema=true",
            "--random_flip",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reports = _reports(result.stdout)
    assert [r["epoch"] for r in reports] == [1, 2] and reports[-1]["optimizer_steps"] == 2
    assert all(math.isfinite(r["fid"]) and r["fid"] > 0 and "kid" in r for r in reports)
    assert "16 training images" in result.stderr  # 20 images, a fixed 20 % held out


@pytest.mark.slow  # two trainings and their FIDs, in this process
def test_the_same_seed_gives_the_same_reports_on_a_builtin_set(train_unet, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFSEARCH_CACHE", str(tmp_path / "cache"))
    args = ["--dataset", "digits", *TINY, "--num_epochs", "1", "--eval_every_steps", "1", "--max_train_samples", "32"]
    assert train_unet.main(args) == 0
    first = _reports(capsys.readouterr().out)
    assert train_unet.main(args) == 0
    assert _reports(capsys.readouterr().out) == first and [r["step"] for r in first] == [1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resolution", "12"], "multiple of 8"),
        (["--learning_rate", "-1"], "--learning_rate must be a positive number"),
        (["--lr_scheduler", "warmup"], "invalid choice"),
        (["--dataset", "cifar"], "invalid choice"),
        (["--dataset", "mnist", "--train_data_dir", "."], "not allowed with argument"),
        (["--train_data_dir", "/no/such/folder"], "is not a folder"),
        (["--num_fid_samples", "1"], "--num_fid_samples must be at least 2"),
        (["--block_out_channels", "8,x"], "comma list of integers"),
        (["--use_ema=maybe"], "expected true or false"),
        (["--resolution", "8", "--block_out_channels", "8,8,8,8,8"], "divisible by 2^4"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(train_unet, args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_unet.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_folder_without_images_exits_2(train_unet, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(SystemExit) as exit_:
        train_unet.main(["--train_data_dir", str(tmp_path)])
    assert exit_.value.code == 2 and "no images" in capsys.readouterr().err


def test_every_point_of_the_example_sweep_is_a_valid_command_line(train_unet):
    from diffsearch.sweeps.program_trial import command_line
    from diffsearch.sweeps.schema import parse_sweep, read_sweep_file

    sweep = parse_sweep(read_sweep_file(EXAMPLES / "sweep.yaml"), "examples/sweep.yaml")
    assert sweep.metric == "fid" and sweep.goal == "minimize" and sweep.early_terminate["type"] == "hyperband"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        command = command_line(sweep, sweep.space.suggest(study.ask()))
        assert command[2] == str(SCRIPT)
        args = train_unet.parse_args(command[3:])  # exits 2 on a flag the script does not know
        seen.add((args.lr_scheduler, "--lr_warmup_steps" in " ".join(command)))
        assert ("--ema_power" in " ".join(command)) == args.use_ema  # conditional: only with the EMA
    assert ("constant", True) not in seen  # lr_warmup_steps is left out for the constant schedule
