import json
import math

import optuna
import pytest

from diffsearch.cli.main import main
from diffsearch.errors import UsageError
from diffsearch.searchers.mct import mct_search, thresholded_mean
from diffsearch.searchers.tree_evolution import evolution_search, primitive_set, to_tokens, to_tree
from diffsearch.searchers.tree_random import random_tree_search
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import parse
from diffsearch.tasks.optimizer_tasks import make_task

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SPACE = UpdateRuleSpace()


class Counting:
    """A cheap objective that records every program it is asked to train."""

    def __init__(self, score=lambda p: float(len(p))):
        self.calls, self.score = [], score

    def __call__(self, program):
        self.calls.append(program)
        return self.score(program)


@pytest.mark.parametrize("budget, levels", [(37, 4), (8, 4), (12, 3), (5, 1)])
def test_mct_budget_accounting_is_exact(budget, levels):
    objective = Counting()
    book, history = mct_search(SPACE, objective, budget=budget, levels=levels, seed=3)
    assert len(objective.calls) == book.used == budget
    keys = [SPACE.key(p) for p in objective.calls]
    assert len(set(keys)) == budget                                  # no duplicate trained
    assert all(SPACE.check(p) is None for p in objective.calls)      # no rejected program trained
    assert book.duplicates + len(book.rejected) + budget == book.proposed
    per_level = [sum(r.counts.values()) for r in history]
    assert per_level[0] == budget // levels + (1 if budget % levels else 0)


def test_mct_moves_to_the_best_mean_child():
    # rules rooted at "div" score 0, everything else 1: the first level must pick "div"
    objective = Counting(lambda p: 0.0 if p[0] == "div" else 1.0)
    book, history = mct_search(SPACE, objective, budget=64, levels=2, seed=0)
    assert history[0].chosen == "div"
    assert all(p[0] == "div" for p in objective.calls[len(objective.calls) - 32:])
    assert history[1].node == "div"


def test_score_thresholding():
    assert thresholded_mean([0.5, 0.7, 2.0, math.inf], threshold=1.0) == pytest.approx(0.6)
    assert thresholded_mean([2.0, math.inf], threshold=1.0) == math.inf


@pytest.mark.parametrize("search", [random_tree_search, evolution_search])
def test_random_and_evolution_use_exactly_the_budget(search):
    objective = Counting()
    book = search(SPACE, objective, budget=30, seed=1)
    assert len(objective.calls) == book.used == 30
    assert len({SPACE.key(p) for p in objective.calls}) == 30
    assert all(SPACE.check(p) is None and len(p) <= SPACE.max_length for p in objective.calls)


def test_evolution_improves_on_its_initial_population():
    objective = Counting(lambda p: 1.0 / (1 + len(p)))  # longer is better: crossover must grow trees
    book = evolution_search(SPACE, objective, budget=60, seed=0, population=8)
    initial_best = min(objective.score(p) for p in objective.calls[:8])
    assert book.best()[1] < initial_best and len(book.best()[0]) == SPACE.max_length


def test_evolution_started_from_adam_breeds_from_it():
    adam = parse("m1h / sqrt(m2h)")
    # near Adam is good: the score counts the tokens a program shares with Adam's
    objective = Counting(lambda p: -float(sum(a == b for a, b in zip(p, adam))) + 0.01 * len(p))
    evolution_search(SPACE, objective, budget=40, seed=0, population=8, start=[adam])
    assert objective.calls[0] == adam
    cold = Counting(objective.score)
    evolution_search(SPACE, cold, budget=40, seed=0, population=8)
    assert adam not in cold.calls
    near_adam = [sum(p[:2] == adam[:2] for p in run.calls[8:]) for run in (objective, cold)]
    assert near_adam[0] >= 10 > near_adam[1]  # children keep Adam's `m1h / ...` when the search starts there


def test_deap_trees_round_trip():
    pset = primitive_set()
    for text in ("exp(ld * sg * sm1) * g", "(1 + sg * sm1) * g", "m1h / sqrt(m2h)"):
        assert to_tokens(to_tree(parse(text), pset)) == parse(text)


def test_task_picks_lr_from_grid_and_stops_diverging_runs():
    task = make_task("toy2d-moons", scale=0.1)
    ev = task.evaluate(parse("g"), seed=0)
    assert ev.lr in task.lr_grid and math.isfinite(ev.score) and ev.score < task.initial_loss
    assert ev.grid[f"{ev.lr:g}"] == min(ev.grid.values())
    blown = task.train(parse("g * 2 ** 2 ** 2 ** 2"), lr=1.0, steps=30, seed=0)
    assert blown.score == math.inf and blown.diverged_at is not None and blown.diverged_at < 30


def run_cli(*args):
    return main([str(a) for a in args])


def test_cli_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["optimizer", "--budget", 3, "--levels", 1, "--scale", 0.03, "--baselines", "Adam,AdamW,Lion",
              "--top", 2, "--transfer", "digits", "--out", out]
    assert run_cli(*common, "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())
    assert printed["leaderboard"] == saved["leaderboard"]
    names = [r["name"] for r in saved["leaderboard"]]
    assert {"Adam", "AdamW", "Lion"} <= set(names) and sum(n.startswith("rule") for n in names) >= 1
    assert all("transfer_score" in r for r in saved["leaderboard"])
    assert saved["search"]["evaluated"] == 3 and (out / "loss_curves.png").stat().st_size > 10_000
    study = optuna.load_study(study_name="optimizer-toy2d-moons-mct", storage=f"sqlite:///{out}/study.db")
    search = [t for t in study.trials if t.user_attrs["role"] == "search"]
    assert len(search) >= 3 and all(parse(t.user_attrs["expr"]) for t in search)
    assert all(UpdateRuleSpace().from_params(t.params) == parse(t.user_attrs["expr"]) for t in search)
    n_trials = len(study.trials)
    assert run_cli(*common) == 0  # rerun: everything comes from the storage
    assert len(optuna.load_study(study_name="optimizer-toy2d-moons-mct",
                                 storage=f"sqlite:///{out}/study.db").trials) == n_trials
    assert "update rules on toy2d-moons" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--check", "m1h / (sqrt(m2h)"], ["--check", "foo + g"],
                                  ["--searcher", "nope"], ["--task", "cifar"], ["--budget", 0],
                                  ["--baselines", "Adam,Nadam"], ["--lr-grid", "quarter"],
                                  ["--lr-grid", "1e-3,-1"], ["--lr-grid", "1e-3,,1"]])
def test_bad_input_is_one_line_exit_2(args, capsys, tmp_path):
    assert run_cli("optimizer", *args, "--out", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffsearch: error:")


def test_check_prints_the_verdict(capsys):
    assert run_cli("optimizer", "--check=-g") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["expr"] == "-g" and "descent" in result["rejected"] and result["descent_cosine"] < -0.99


class Batched(Counting):
    """Records the batches a searcher hands over at once (what workers would train in parallel)."""

    def __init__(self, score=lambda p: float(len(p))):
        super().__init__(score)
        self.batches = []

    def many(self, programs):
        self.batches.append(len(programs))
        return [self(p) for p in programs]


def test_mct_trains_each_level_as_one_batch():
    objective = Batched()
    book, _ = mct_search(SPACE, objective, budget=40, levels=4, seed=3)
    assert objective.batches[:4] == [10, 10, 10, 10] and book.used == 40


@pytest.mark.parametrize("batch", [1, 4])
def test_evolution_breeds_batches_of_children(batch):
    objective = Batched(lambda p: 1.0 / (1 + len(p)))
    book = evolution_search(SPACE, objective, budget=30, seed=0, population=8, batch=batch)
    assert objective.batches[0] == 8 and max(objective.batches[1:]) == batch
    assert book.used == len(objective.calls) == 30 == len({SPACE.key(p) for p in objective.calls})


def test_random_search_trains_everything_in_one_batch():
    objective = Batched()
    random_tree_search(SPACE, objective, budget=30, seed=1)
    assert objective.batches == [30]


def test_ctrl_c_mid_level_then_rerun_trains_each_rule_once(tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffsearch", "optimizer", "--budget", "8", "--levels", "1", "--scale", "0.15",
           "--baselines", "none", "--top", "1", "--out", str(out)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:  # interrupt once a few rules of the level are trained
        time.sleep(0.1)
        try:
            with sqlite3.connect(f"file:{out}/study.db?mode=ro", uri=True) as db:
                if db.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] >= 2:
                    break
        except sqlite3.Error:
            continue
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and b"Traceback" not in err, err
    subprocess.run(cmd, check=True, capture_output=True)
    study = optuna.load_study(study_name="optimizer-toy2d-moons-mct", storage=f"sqlite:///{out}/study.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8 == len({t.user_attrs["key"] for t in complete})
    assert not [t for t in study.trials if t.state in (optuna.trial.TrialState.WAITING,
                                                       optuna.trial.TrialState.RUNNING)]


def test_prdc_score_ranks_a_trained_rule_above_a_useless_one(tmp_path, capsys):
    from diffsearch.tasks.optimizer_tasks import make_task

    task = make_task("toy2d-moons", scale=0.5, score="prdc")
    adam = task.evaluate(parse("m1h / sqrt(m2h)"))
    tiny_steps = task.evaluate(parse("noise"))  # a random walk: no lr of the grid trains the model
    assert 0 <= adam.score < tiny_steps.score <= task.initial_score + 0.2
    assert adam.final_loss is not None and adam.final_loss < task.initial_loss
    out = tmp_path / "run"
    assert run_cli("optimizer", "--budget", 2, "--levels", 1, "--scale", 0.1, "--baselines", "Adam", "--top", 1,
                   "--score", "prdc", "--out", out, "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert results["options"]["score"] == "prdc" and results["study"].endswith("-prdc")
    adam_row = next(r for r in results["leaderboard"] if r["name"] == "Adam")
    assert 0 <= adam_row["score"] < results["initial_score"]
    assert run_cli("optimizer", "--score", "fid", "--out", out) == 2


def test_lr_grid_presets_and_lists():
    from diffsearch.tasks.optimizer_tasks import LR_GRID, parse_lr_grid

    assert parse_lr_grid("decade") == LR_GRID == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    half = parse_lr_grid("half-decade")
    assert len(half) == 11 and set(LR_GRID) <= set(half) and half == tuple(sorted(half))
    assert parse_lr_grid("1e-2, 1e-3,1e-2") == (1e-3, 1e-2)
    for bad in ("", "0", "1e-3,nan", "fast"):
        with pytest.raises(UsageError):
            parse_lr_grid(bad)


def test_lr_grid_option_reaches_every_training_and_guards_the_study(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["optimizer", "--budget", 2, "--levels", 1, "--scale", 0.03, "--baselines", "Adam", "--top", 1,
              "--transfer", "digits", "--out", out]
    assert run_cli(*common, "--lr-grid", "3e-2, 3e-3", "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert results["study"] == "optimizer-toy2d-moons-mct-lr-0.003_0.03"
    study = optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db")
    assert study.user_attrs["lr_grid"] == [3e-3, 3e-2]
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.user_attrs["role"] for t in trained} == {"search", "baseline", "transfer"}
    assert all(set(t.user_attrs["lr_grid"]) == {"0.003", "0.03"} and t.user_attrs["lr"] in (3e-3, 3e-2)
               for t in trained)
    # the same study with another grid would mix two measurements
    assert run_cli(*common, "--study", results["study"], "--lr-grid", "half-decade") == 2
    assert "lr_grid" in capsys.readouterr().err


def test_start_from_is_trained_but_not_listed_as_a_discovery(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("optimizer", "--searcher", "evolution", "--start-from", "Adam", "--budget", 3, "--scale", 0.03,
                   "--baselines", "Adam", "--top", 3, "--out", out, "--json") == 0
    results = json.loads(capsys.readouterr().out)
    study = optuna.load_study(study_name=results["study"], storage=f"sqlite:///{out}/study.db")
    search = [t.user_attrs["expr"] for t in study.trials if t.user_attrs["role"] == "search"]
    assert "m1h / sqrt(m2h)" in search and len(search) == 3
    rules = [r["expr"] for r in results["leaderboard"] if r["kind"] == "rule"]
    assert len(rules) == 2 and "m1h / sqrt(m2h)" not in rules
