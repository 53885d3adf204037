"""``--trial-timeout`` in every job: a trial that runs too long is failed with its reason, the run goes on."""

from __future__ import annotations

import time

import optuna
import pytest

import diffsearch.ledger.trial_timeout as trial_timeout
from diffsearch.cli.main import main
from diffsearch.errors import TrialTimedOut
from diffsearch.ledger.interrupt import stop_point
from diffsearch.ledger.trial_timeout import time_limit

REASON = "timeout after 0.3 s (--trial-timeout)"


def test_a_trial_is_stopped_at_its_next_safe_point_after_the_deadline():
    start = time.monotonic()
    with pytest.raises(TrialTimedOut, match="^timeout after 0.2 s"):
        with time_limit(0.2):
            while True:
                stop_point()
                time.sleep(0.01)
    assert 0.2 <= time.monotonic() - start < 2


def test_a_trial_that_hangs_without_a_safe_point_is_stopped_after_the_grace(monkeypatch):
    monkeypatch.setattr(trial_timeout, "HARD_GRACE_SECONDS", 0.3)
    start = time.monotonic()
    with pytest.raises(TrialTimedOut):
        with time_limit(0.2):
            time.sleep(30)  # never reaches stop_point
    assert time.monotonic() - start < 5
    with time_limit(0.2):
        pass
    time.sleep(0.6)  # no alarm is left behind once the trial is over


def test_bad_values_are_refused_in_one_line(tmp_path, capsys):
    for value in ("0", "-1", "nan", "inf"):
        assert main(["hparams", "--trial-timeout", value, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert "--trial-timeout must be" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "study.db").exists()


def _failed_for_timeout(trials) -> list:
    return [t for t in trials if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("fail_reason") == REASON]


@pytest.mark.slow
def test_hparams(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "hparams",
                "--dataset",
                "moons",
                "--searcher",
                "random",
                "--trials",
                "2",
                "--points",
                "3000",
                "--held-out",
                "500",
                "--epochs",
                "2000",
                "--baseline-runs",
                "0",
                "--trial-timeout",
                "0.3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="hparams-moons-random", storage=f"sqlite:///{out}/study.db")
    assert len(_failed_for_timeout(study.trials)) == 2 and (out / "results.json").exists()


@pytest.mark.slow
def test_optimizer(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "optimizer",
                "--budget",
                "2",
                "--levels",
                "1",
                "--scale",
                "2",
                "--baselines",
                "Adam",
                "--top",
                "1",
                "--trial-timeout",
                "0.3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="optimizer-toy2d-moons-mct", storage=f"sqlite:///{out}/study.db")
    assert _failed_for_timeout(study.trials) and (out / "results.json").exists()


@pytest.mark.slow
def test_prompt(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "prompt",
                "a red boat",
                "--model",
                "tiny",
                "--clip",
                "tiny",
                "--steps",
                "400",
                "--budget",
                "2",
                "--iterations",
                "1",
                "--searcher",
                "gpo",
                "--lexicon-cache",
                str(tmp_path / "lexicon.json"),
                "--trial-timeout",
                "0.3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    storage = f"sqlite:///{out}/study.db"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert _failed_for_timeout(study.trials)


@pytest.mark.slow
def test_schedule(tmp_path, monkeypatch):
    from diffsearch.tasks import schedule_sampler

    loop, slowed = schedule_sampler.PipelineSampler._loop, []

    def first_search_trial_hangs(self, cond, uncond, seeds):
        if len(self.backend.scheduler.timesteps) == 3 and not slowed:  # a 3-step trial; the teacher takes 6
            slowed.append(True)
            original = self.backend.predict
            self.backend.predict = lambda *a: (time.sleep(0.2), original(*a))[1]
            try:
                return loop(self, cond, uncond, seeds)
            finally:
                self.backend.predict = original
        return loop(self, cond, uncond, seeds)

    monkeypatch.setattr(schedule_sampler.PipelineSampler, "_loop", first_search_trial_hangs)
    out = tmp_path / "run"
    args = ["schedule", "--model", "tiny", "--nfe", "3", "--teacher-steps", "6", "--search-images", "2"]
    args += ["--budget", "3", "--searcher", "evolution", "--fid-images", "50", "--trial-timeout", "0.3"]
    assert main([*args, "--out", str(out)]) == 0
    storage = f"sqlite:///{out}/study.db"
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert len(_failed_for_timeout(trials)) == 1 and len([t for t in trials if t.value is not None]) == 2
