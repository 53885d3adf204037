"""``diffsearch hparams`` on images end to end, on the tiniest settings (CPU), and its one-line errors."""

import json

import optuna
import pytest

from diffsearch.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
# the smallest run that still goes through every step: 32 digits at 16 px, UNet at 1/8 width
TINY_IMAGES = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--width",
    "0.125",
    "--resolution",
    "16",
    "--fid-samples",
    "6",
    "--sample-steps",
    "3",
    "--train-images",
    "32",
    "--device",
    "cpu",
]


@pytest.fixture(autouse=True)
def fid_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
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
    assert (
        main(
            [
                "hparams",
                *TINY_IMAGES,
                "--width",
                "0.25",
                "--trials",
                "2",
                "--out",
                str(out),
                "--study",
                "hparams-digits-tpe",
            ]
        )
        == 2
    )
    assert "made with width=0.125" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_prunes_by_epochs_with_fid_checkpoints(tmp_path):
    out = tmp_path / "run"
    args = [a if a != "1" else "2" for a in TINY_IMAGES]  # 2 epochs
    # seed 1: the second random configuration's FID at epoch 1 is worse than the first's (by ~8, of ~500),
    # so successive halving (reduction factor 2: only the best of two goes on) prunes it there
    assert (
        main(
            [
                "hparams",
                *args,
                "--searcher",
                "random",
                "--trials",
                "2",
                "--prune",
                "sh",
                "--min-epochs",
                "1",
                "--seed",
                "1",
                "--out",
                str(out),
                "--baseline-runs",
                "0",
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="hparams-digits-random-sh", storage=f"sqlite:///{out}/study.db")
    assert len(study.trials) == 2
    assert all(set(t.intermediate_values) == {1} for t in study.trials)  # FID reported at epoch 1
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value is not None
    assert second.state == optuna.trial.TrialState.PRUNED and second.user_attrs["pruned_at_epoch"] == 1
    assert second.intermediate_values[1] > first.intermediate_values[1]  # pruned for the worse FID
    results = json.loads((out / "results.json").read_text())
    assert [t["pruned_at_epoch"] for t in results["trials"]] == [None, 1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resolution", "12"], "multiple of 8"),
        (["--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["--width", "0"], "--width must be in"),
        (["--fid-samples", "1"], "--fid-samples must be at least 2"),
    ],
)
def test_bad_image_input_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["hparams", *TINY_IMAGES, "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
