"""``diffsearch report``: the table and the HTML page, for a search study, a repeats study, the committed ledgers."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from diffsearch.cli.main import main
from diffsearch.ledger.explain import attach, explain_study

from helpers import tiny_png

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _ledger(tmp_path: Path) -> str:
    """A search study with a conditional param, a lost trial and its retry, a surplus trial, an image; and its
    repeats study."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = optuna.create_study(storage=url, study_name="s")
    explain_study(search, "PRDC loss", "# s\nthe search")
    rng = random.Random(0)
    for i in range(16):
        params = {"lr": 10 ** rng.uniform(-4, -1), "optimizer": "adamw" if i % 2 else "adam"}
        dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "optimizer": CategoricalDistribution(["adam", "adamw"])}
        if i % 2:
            params["weight_decay"], dists["weight_decay"] = 0.01, FloatDistribution(0, 0.1)
        search.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=abs(params["lr"] - 0.01), intermediate_values={1: 0.5}
            )
        )
    search.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"lost_reason": "worker h:1 is gone"})
    )
    search.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, user_attrs={"retry_of": 16}))
    search.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={"surplus": "the budget was met by earlier trials"}
        )
    )
    attach(search, tiny_png(tmp_path / "samples.png"), tmp_path)
    repeats = optuna.create_study(storage=url, study_name="s.repeats")
    explain_study(
        repeats, "PRDC loss", "re-trainings", {"kind": "repeats", "repeats_of": "s", "roles": ["best", "baseline"]}
    )
    for role, value in (("best", 0.1), ("best", 0.2), ("baseline", 0.5)):
        repeats.add_trial(
            optuna.trial.create_trial(
                params={"lr": 0.01},
                value=value,
                user_attrs={"role": role},
                distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)},
            )
        )
    return url


@pytest.mark.slow
def test_report_of_a_search_study(tmp_path, capsys):
    url = _ledger(tmp_path)
    assert main(["report", "--study", "s", "--storage", url, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metric"] == "PRDC loss" and summary["kind"] == "search"
    assert set(summary["importance"]["importances"]) == {"lr", "optimizer"}
    assert summary["importance"]["left_out_conditional"] == ["weight_decay"]
    assert summary["lost"] == [{"number": 16, "reason": "worker h:1 is gone", "retried_by": 17}]
    # the surplus trial (FAIL in Optuna, never run) is counted apart from the lost one
    assert summary["states"] == {"COMPLETE": 16, "FAIL": 1, "WAITING": 1, "SURPLUS": 1}
    assert main(["report", "--study", "s", "--storage", url, "--out", str(tmp_path / "pages")]) == 0
    printed = capsys.readouterr().out
    assert "16 complete, 1 fail, 1 surplus, 1 waiting" in printed and "never run" in printed
    page = Path(summary["page"]).read_text()
    assert page.count("plotly-graph-div") >= 4  # history, importance, parallel coordinates, intermediate values
    assert "artifact: samples.png" in page and "data:image/png;base64," in page and "the search" in page


@pytest.mark.slow
def test_report_of_a_repeats_study_gives_each_role_not_a_best(tmp_path, capsys):
    url = _ledger(tmp_path)
    assert main(["report", "--study", "s.repeats", "--storage", url, "--out", str(tmp_path / "pages")]) == 0
    printed = capsys.readouterr().out
    assert "best  " in printed and "0.1500 ± 0.0707" in printed and "baseline" in printed
    assert "best trial" not in printed and "importance" not in printed
    assert (tmp_path / "pages" / "s.repeats.html").is_file()


def test_report_names_the_studies_when_one_is_missing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for name in ("s", "s.repeats"):
        optuna.create_study(storage=url, study_name=name)
    assert main(["report", "--study", "nope", "--storage", url]) == 2
    assert "it holds: s, s.repeats" in capsys.readouterr().err
    assert main(["report", "--study", "s", "--storage", f"sqlite:///{tmp_path / 'none.db'}"]) == 2


@pytest.mark.slow
def test_report_on_the_committed_ledgers(tmp_path, capsys):
    shutil.copy(RESULTS / "hparams_toy2d.db", tmp_path / "hparams.db")  # never the committed files themselves
    (tmp_path / "optimizer.db").write_bytes(gzip.decompress((RESULTS / "optimizer_search.db.gz").read_bytes()))
    assert (
        main(["report", "--study", "toy2d-moons-tpe", "--storage", f"sqlite:///{tmp_path / 'hparams.db'}", "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    importance = summary["importance"]
    assert (
        "weight_decay" in importance["left_out_conditional"]
        and max(importance["importances"], key=importance["importances"].get) == "lr"
    )
    assert (
        main(["report", "--study", "bench-mct-seed0", "--storage", f"sqlite:///{tmp_path / 'optimizer.db'}", "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["best"] and "PED-ANOVA" in summary["importance"]["evaluator"]  # a wide categorical space


@pytest.mark.slow
def test_report_without_plotly_draws_the_plots_with_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "plotly", None)  # import fails as if not installed
    url = _ledger(tmp_path)
    assert main(["report", "--study", "s", "--storage", url, "--json"]) == 0
    page = Path(json.loads(capsys.readouterr().out)["page"]).read_text()
    assert "plotly-graph-div" not in page
    assert page.count("data:image/png;base64,") == 5  # history, importance, parallel, intermediate; the artifact


def test_the_committed_ledger_replays_to_the_committed_figures(tmp_path):
    """Behaviour unchanged: the benchmark's committed ledger, read by today's code, gives the figures its
    committed table printed (each searcher's best trial, and the mean of its repeated runs)."""
    from diffsearch.ledger import best_trial, done_trials

    shutil.copy(RESULTS / "hparams_toy2d.db", tmp_path / "hparams.db")
    storage = f"sqlite:///{tmp_path / 'hparams.db'}"
    for row in json.loads((RESULTS / "hparams_toy2d.json").read_text()):
        name = f"toy2d-{row['dataset']}-{row['strategy']}"
        if row["best"] is not None:
            best = best_trial(optuna.load_study(study_name=name, storage=storage))
            assert best is not None and best.value == pytest.approx(row["best"], rel=1e-12), name
        repeats = [t.value for t in done_trials(optuna.load_study(study_name=name + ".repeats", storage=storage))]
        assert len(repeats) == row["runs"] and sum(repeats) / len(repeats) == pytest.approx(row["mean"], rel=1e-9)
