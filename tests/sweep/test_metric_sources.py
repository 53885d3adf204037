"""The readers of TensorBoard event files and wandb transaction logs, on files the real writers wrote, read
while they grow (a file copied a piece at a time stands for a file a running program is writing)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffsearch.errors import TrialFailed
from diffsearch.sweeps.metric_sources import TensorBoardEvents, WandbRun, file_sources, wandb_environment


def grow(source: Path, target: Path, sizes):
    """Copy ``source`` into ``target`` a piece at a time, yielding after each piece."""
    data = source.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        target.write_bytes(data[: min(size, len(data))])
        yield
    target.write_bytes(data)
    yield


def test_tensorboard_scalars_are_read_as_the_file_grows_and_add_scalars_is_named_main_slash_sub(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    written = tmp_path / "written"
    with SummaryWriter(log_dir=str(written)) as writer:
        for step in range(40):
            writer.add_scalar("train_loss", 1.0 / (step + 1), global_step=step)
            writer.add_text("note", f"step {step}", global_step=step)  # not a number
        writer.add_scalars("loss", {"val": 0.25}, global_step=3)
        writer.add_histogram("weights", np.array([0.1, 0.2, 0.3]), global_step=3)
    (event_file,) = written.glob("events.out.tfevents.*")
    source = TensorBoardEvents(tmp_path / "trial", "train_loss")
    assert source.poll() == [] and "no TensorBoard event files" in source.looked()
    reports = []
    for _ in grow(event_file, tmp_path / "trial" / "logs" / event_file.name, range(50, 6000, 97)):
        reports += source.poll()
    assert [r.step for r in reports] == list(range(40))  # each once, in order, none lost at a cut record
    assert [r.value for r in reports] == pytest.approx([1.0 / (s + 1) for s in range(40)])
    (sub_file,) = written.glob("loss_val/events.out.tfevents.*")
    (tmp_path / "trial" / "logs" / "loss_val").mkdir()
    (tmp_path / "trial" / "logs" / "loss_val" / sub_file.name).write_bytes(sub_file.read_bytes())
    assert source.poll() == []
    assert source.seen == {"train_loss", "loss/val"}  # text and histograms are no metrics
    other = TensorBoardEvents(tmp_path / "trial", "loss/val")
    assert [(r.step, r.value) for r in other.poll()] == [(3, 0.25)]
    missing = TensorBoardEvents(tmp_path / "trial", "val_loss")
    missing.poll()
    assert "2 TensorBoard event file(s)" in missing.looked() and "loss/val, train_loss" in missing.looked()


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    """A real offline wandb run (its transaction log), written by the wandb package from a script's
    ``wandb.log`` calls, with the trial's values given the way W&B's agent gives them."""
    folder = tmp_path_factory.mktemp("wandb")
    script = folder / "train.py"
    script.write_text(
        "import json, wandb\n"
        "run = wandb.init(project='p', config={'lr': 0.5, 'opt': {'name': 'sgd'}})\n"
        "print('CONFIG ' + json.dumps(dict(wandb.config)), flush=True)\n"
        "for step in range(300):\n"
        "    wandb.log({'val': {'loss': 1.0 / (step + 1)}, 'note': 'text', 'lr': wandb.config.lr}, step=step)\n"
        "run.finish()\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_environment(folder, {"lr": 0.125, "opt": {"name": "adam"}}, env))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (log,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    return folder, log, done.stdout


def test_wandb_config_holds_the_trials_values_as_under_the_agent(wandb_run):
    _, _, stdout = wandb_run
    assert 'CONFIG {"lr": 0.125, "opt": {"name": "adam"}}' in stdout  # the script's defaults were replaced


def test_wandb_history_is_read_as_the_transaction_log_grows(wandb_run, tmp_path):
    _, log, _ = wandb_run
    source = WandbRun(tmp_path, "val.loss")
    assert source.poll() == [] and "never called wandb.init" in source.looked()
    reports = []
    size = log.stat().st_size
    for _ in grow(log, tmp_path / "wandb" / "offline-run-x" / log.name, range(3, size, max(1, size // 37))):
        reports += source.poll()
    assert [r.step for r in reports] == list(range(300))  # each once, in order, across block boundaries
    assert [r.value for r in reports] == pytest.approx([1.0 / (s + 1) for s in range(300)])
    assert size > 32768  # the log spans several LevelDB blocks: records split across them were joined
    assert {"val.loss", "lr", "note"} <= source.seen


def test_a_wandb_metric_that_is_not_a_number_fails_and_a_missing_one_names_what_was_logged(wandb_run, tmp_path):
    _, log, _ = wandb_run
    with pytest.raises(TrialFailed, match="'note' was logged to wandb as 'text', not a number"):
        WandbRun(log.parent, "note").poll()
    missing = WandbRun(log.parent, "loss")
    assert missing.poll() == []
    assert "it logged lr, note, val.loss" in missing.looked()


def test_sources_by_setting_and_path(tmp_path):
    assert [s.name for s in file_sources("auto", None, tmp_path, "m")] == ["tensorboard", "wandb"]
    assert file_sources("stdout", None, tmp_path, "m") == []
    (tb,) = file_sources("tensorboard", "logs/tb", tmp_path, "m")
    assert tb.root == tmp_path / "logs" / "tb"
    (wb,) = file_sources("wandb", "${trial_dir}/w", tmp_path, "m")
    assert wb.root == tmp_path / "w"
