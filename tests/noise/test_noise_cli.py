"""``diffsearch noise`` end to end on the tiny SD pipeline, the ensemble verifier, and bad input: one line, exit 2."""

import json

import numpy as np
import optuna
import pytest
import torch

from diffsearch.backends.families import PipelineBackend, SDBackend
from diffsearch.cli.main import main
from diffsearch.objectives.ensemble import Verifier

REWARDS = """
import torch

def contrast(images, prompt):
    return images.flatten(1).std(dim=1) * 100

def frozen(images, prompt):
    return torch.tensor(images.flatten(1).std(dim=1).detach().numpy()) * 100
"""
BASE = ["noise", "a red boat", "--model", "tiny", "--clip", "tiny", "--steps", "3"]


@pytest.fixture
def rewards(tmp_path, monkeypatch):
    (tmp_path / "noise_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "noise_rewards"


def test_zero_order_end_to_end_then_start_from_the_saved_latent(tmp_path, rewards, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                *BASE,
                "--searcher",
                "zero-order",
                "--reward",
                f"{rewards}:contrast",
                "--budget-nfe",
                "36",
                "--neighbours",
                "2",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    r = results["prompts"][0]
    assert r["spent_nfe"] == 36 and r["generation_nfe"] == 6 and r["generations"] == 6
    assert r["best"]["pipeline_max_abs_diff"] < 1e-4
    assert r["best"]["scores"][f"{rewards}:contrast"] >= r["user"]["scores"][f"{rewards}:contrast"]
    assert "pipe('a red boat', num_inference_steps=3" in r["best"]["diffusers_call"]
    assert (out / "before_after.png").is_file() and (out / "noise_000_best.safetensors").is_file()
    study = optuna.load_study(study_name=results["study"], storage=results["storage"])
    assert len(study.trials) == r["generations"] + r["partial_evaluations"]
    # the chosen latent as the next run's start: its user image is the previous best
    again = tmp_path / "again"
    assert (
        main(
            [
                *BASE,
                "--searcher",
                "best-of-n",
                "--reward",
                f"{rewards}:contrast",
                "--budget-nfe",
                "6",
                "--latent",
                r["best"]["files"]["safetensors"],
                "--out",
                str(again),
                "--json",
            ]
        )
        == 0
    )
    r2 = json.loads(capsys.readouterr().out)["prompts"][0]
    assert r2["user"]["moved"] and r2["user"]["scores"] == pytest.approx(r["best"]["scores"], rel=1e-5)


def test_rerun_reads_seeded_generations_back_from_the_ledger(tmp_path, rewards, capsys):
    argv = [
        *BASE,
        "--searcher",
        "best-of-n",
        "--reward",
        f"{rewards}:contrast",
        "--budget-nfe",
        "18",
        "--out",
        str(tmp_path / "run"),
        "--json",
    ]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)["prompts"][0]
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)["prompts"][0]
    assert first["forward_nfe"] == 18 and second["forward_nfe"] == 0  # nothing generated again
    assert second["spent_nfe"] == 18 and second["best"]["seed"] == first["best"]["seed"]


def test_ensemble_rank_and_zscore():
    class R:
        def __init__(self, name):
            self.name = name

    scores = np.array([[1.0, 3.0, 2.0], [100.0, 10.0, 50.0]])
    rank = Verifier([R("a"), R("b")], "rank").combine(scores)
    assert rank.tolist() == [1.0, 1.0, 1.0]
    z = Verifier([R("a"), R("b")], "zscore").combine(scores)
    assert z.shape == (3,) and np.isclose(z.sum(), 0)
    assert Verifier([R("a")]).combine(scores[:1]).tolist() == [1.0, 3.0, 2.0]


def _refused(argv, capsys, tmp_path, *words):
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    return err


def test_bad_input_is_one_line(tmp_path, rewards, capsys, monkeypatch):
    _refused([*BASE, "--budget-nfe", "5"], capsys, tmp_path, "less than one generation", "6 NFE")
    assert not (tmp_path / "refused").exists()
    _refused([*BASE, "--searcher", "gradient", "--reward", f"{rewards}:frozen"], capsys, tmp_path, "no gradient")
    _refused(
        [*BASE, "--searcher", "gradient", "--reward", f"{rewards}:contrast,clip"], capsys, tmp_path, "one --reward"
    )
    _refused([*BASE, "--searcher", "nope"], capsys, tmp_path, "unknown --searcher")
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.zeros(1, 4, 3, 3), wrong)
    _refused([*BASE, "--latent", str(wrong)], capsys, tmp_path, "does not fit")
    monkeypatch.setattr(SDBackend, "renoise", PipelineBackend.renoise)  # a family without the hook
    _refused([*BASE, "--searcher", "paths"], capsys, tmp_path, "no renoise hook")
