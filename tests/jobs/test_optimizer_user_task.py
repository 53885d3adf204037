"""``diffsearch optimizer --task module:factory``: a training of the user's own as the task rules are found on.

The tiny tasks below live in this module, so the spec is ``test_optimizer_user_task:<factory>`` (pytest puts
tests/jobs on sys.path; the worker process is started in tests/jobs, where the module imports the same way).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from diffsearch.cli.main import main
from diffsearch.errors import TrialDiverged, UsageError
from diffsearch.jobs.optimizer import JOB, OptimizerOptions
from diffsearch.jobs.optimizer_ledger import LedgerEvaluator
from diffsearch.ledger import FINISHED_ATTR, create_or_load_study, open_storage
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import parse
from diffsearch.tasks.user_task import UserTask, UserTrainingTask, load_user_task

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE = "test_optimizer_user_task"
SPEC = f"{MODULE}:make_tiny_task"


class TinyRegression:
    """Least squares with a linear layer: milliseconds per training, a loss that depends on the rule and lr."""

    name = "tiny-regression"
    steps = 20

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=gen)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=gen)

    def train(self, make_optimizer, seed: int) -> float:
        torch.manual_seed(seed)
        model = torch.nn.Linear(4, 1)
        optimizer = make_optimizer(model.parameters())
        for _ in range(self.steps):
            loss = torch.nn.functional.mse_loss(model(self.x), self.y)
            if not torch.isfinite(loss):
                raise TrialDiverged(f"loss {float(loss.detach())}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(self.x), self.y))


def make_tiny_task():
    return TinyRegression()


class Stepless:
    name = "no steps"

    def train(self, make_optimizer, seed):
        return 0.0


class NeverBuildsAnOptimizer(TinyRegression):
    def train(self, make_optimizer, seed):
        return 1.0


def make_stepless():
    return Stepless()


def make_failing():
    raise FileNotFoundError("no data in /nowhere")


def make_never_builds():
    return NeverBuildsAnOptimizer()


NOT_CALLABLE = 3


def run_cli(*args):
    return main([str(a) for a in args])


def test_the_tiny_task_has_the_protocol_and_a_rule_is_scored_on_the_grid():
    task = load_user_task(SPEC)
    assert isinstance(task, UserTask)
    wrapped = UserTrainingTask(SPEC, (1e-3, 1e-1, 10.0))
    adam = wrapped.evaluate(parse("m1h / sqrt(m2h)"), seed=0)
    assert adam.lr == 1e-1 and adam.score == min(adam.grid.values()) < wrapped.initial_score
    sgd = wrapped.evaluate(parse("g"), seed=0)
    assert sgd.grid["10"] == math.inf  # SGD at lr 10 blows up: TrialDiverged counts as diverged
    assert wrapped.initial_score == pytest.approx(TinyRegression().train(lambda p: torch.optim.SGD(p, lr=0.0), 0))


def test_a_train_that_never_builds_the_optimizer_fails_the_rule():
    with pytest.raises(RuntimeError, match="without calling make_optimizer"):
        UserTrainingTask(f"{MODULE}:make_never_builds", (1e-3,)).evaluate(parse("g"))


@pytest.mark.slow  # two CLI runs of the whole job: 9 s on a quiet machine, minutes on a busy one
def test_end_to_end_records_the_task_in_the_study(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(
            "optimizer",
            "--task",
            SPEC,
            "--budget",
            3,
            "--levels",
            1,
            "--baselines",
            "Adam,SGD",
            "--top",
            1,
            "--lr-grid",
            "1e-2,1e-1",
            "--out",
            out,
            "--json",
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert results["study"] == f"optimizer-{MODULE}-make_tiny_task-mct-lr-0.01_0.1"
    assert results["search"]["evaluated"] == 3
    assert results["initial_score"] == pytest.approx(UserTrainingTask(SPEC, (1.0,)).initial_score)
    board = {r["name"]: r for r in results["leaderboard"]}
    assert board["Adam"]["score"] < results["initial_score"] and board["Adam"]["lr"] in (1e-2, 1e-1)
    study = optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db")
    assert study.user_attrs["dataset"] == SPEC  # what a worker rebuilds the task from
    trials = study.get_trials(deepcopy=False)
    assert {t.user_attrs["task"] for t in trials} == {SPEC}
    assert {t.user_attrs["role"] for t in trials} == {"search", "baseline"}
    assert all(set(t.user_attrs["lr_grid"]) == {"0.01", "0.1"} for t in trials if t.state == TrialState.COMPLETE)
    n_trials = len(trials)
    assert (
        run_cli(
            "optimizer",
            "--task",
            SPEC,
            "--budget",
            3,
            "--levels",
            1,
            "--baselines",
            "Adam,SGD",
            "--top",
            1,
            "--lr-grid",
            "1e-2,1e-1",
            "--out",
            out,
        )
        == 0
    )  # a rerun replays, trains nothing
    assert len(optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db").trials) == n_trials
    # the table title, which rich wraps to the table's width (a narrow table at 80 columns: several lines)
    assert "(score its train() returns" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module_for_diffsearch:make", "cannot import 'no_such_module_for_diffsearch'"),
        (f"{MODULE}:missing_factory", "has no 'missing_factory'"),
        (f"{MODULE}:NOT_CALLABLE", "not a callable factory"),
        (f"{MODULE}:make_failing", "make_failing() failed: FileNotFoundError: no data in /nowhere"),
        (f"{MODULE}:make_stepless", "steps is not an int >= 1"),
        (f"{MODULE}:", "module:factory"),
    ],
)
def test_a_bad_task_is_one_line_exit_2_before_anything_is_written(spec, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("optimizer", "--task", spec, "--budget", 1, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffsearch: error:") and message in err[0]
    assert not out.exists()
    assert run_cli("optimizer", "--transfer", spec, "--budget", 1, "--out", out) == 2  # the same for --transfer
    assert not out.exists()


def test_score_and_scale_do_not_apply_to_a_task_of_ones_own(tmp_path, capsys):
    for flags in (["--score", "prdc"], ["--scale", 0.5]):
        assert run_cli("optimizer", "--task", SPEC, *flags, "--out", tmp_path / "run") == 2
        assert "a task of your own" in capsys.readouterr().err


@pytest.mark.slow  # a `diffsearch worker` process imports torch and the task module
def test_a_worker_process_rebuilds_the_task_from_the_study_and_trains_the_rules(tmp_path):
    options = OptimizerOptions(
        task=SPEC, budget=2, lr_grid="1e-2,1e-1", study="shared", storage=str(tmp_path / "ledger.log")
    ).resolved()
    study = create_or_load_study(
        open_storage(options.storage, heartbeat=1), "shared", {**JOB.studies(options)["shared"], FINISHED_ATTR: False}
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diffsearch",
            "worker",
            "--study",
            "shared",
            "--storage",
            options.storage,
            "--heartbeat",
            "1",
        ],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    programs = [parse("m1h / sqrt(m2h)"), parse("sign(m1)")]
    try:
        task = JOB.prepare(options)
        evaluator = LedgerEvaluator(study, UpdateRuleSpace(), task, "search", 0)
        evaluator.queue.runner.waiting = lambda: False  # this process only waits: the worker trains
        scores = evaluator.many(programs)
    finally:
        study.set_user_attr(FINISHED_ATTR, True)
    assert worker.wait(timeout=120) == 0, worker.communicate()[1].decode()[-2000:]
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(trials) == 2 and {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials} == {str(worker.pid)}
    local = UserTrainingTask(SPEC, (1e-2, 1e-1))
    assert scores == pytest.approx([local.evaluate(p).score for p in programs], rel=1e-5)


@pytest.mark.slow  # a few trainings of the example UNet
def test_the_example_unet_task_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # examples.optimizer_task imports from the repository root
    out = tmp_path / "run"
    assert (
        run_cli(
            "optimizer",
            "--task",
            "examples.optimizer_task:make_task",
            "--budget",
            2,
            "--levels",
            1,
            "--baselines",
            "Adam",
            "--top",
            1,
            "--lr-grid",
            "1e-2",
            "--out",
            out,
            "--json",
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    adam = next(r for r in results["leaderboard"] if r["name"] == "Adam")
    assert 0 < adam["score"] < results["initial_score"]  # Adam trains the UNet: its denoising loss falls
    assert results["search"]["evaluated"] == 2


def test_an_unknown_builtin_name_still_lists_the_tasks(capsys, tmp_path):
    with pytest.raises(UsageError, match="module:factory"):
        OptimizerOptions(task="cifar", out=str(tmp_path)).resolved()
