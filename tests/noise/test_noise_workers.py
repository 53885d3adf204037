"""``diffsearch noise --workers 2``: the seeds' generations are handed out as waiting trials that a second
process runs too; the chosen seeds, the scores and the NFE spent are those of one process."""

import json

import numpy as np
import optuna
import pytest

from diffsearch.cli.main import main
from diffsearch.backends.stable_diffusion import load_backend
from diffsearch.ledger.studies import FINISHED_ATTR
from diffsearch.objectives.ensemble import Verifier
from diffsearch.objectives.rewards import Reward
from diffsearch.searchers.noise.base import NoiseSearchSettings
from diffsearch.searchers.noise.registry import NOISE_SEARCHERS
from diffsearch.tasks.noise_task import NoiseTask

REWARDS = """
def contrast(images, prompt):
    return images.flatten(1).std(dim=1) * 100
"""


class Contrast(Reward):
    name = "contrast"

    def score(self, images, prompt):
        return images.flatten(1).std(dim=1) * 100


@pytest.mark.parametrize("searcher", ["best-of-n", "zero-order"])
def test_the_queue_chooses_what_one_process_chooses(searcher):
    """Through the work queue (here this process runs the waiting trials itself) the seeds' generations
    are trials carrying their seed; the candidates, their scores, the choice and the NFE are the same."""
    backend = load_backend("tiny", steps=3)
    tasks = {}
    for queue in (False, True):
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
        task = NoiseTask(backend, Verifier([Contrast()]), "a red boat", study, 10 * 6 + 5, seed=2, batch=4, queue=queue)
        task.evaluate([task.user])
        NOISE_SEARCHERS.get(searcher)().search(task, NoiseSearchSettings(neighbours=3))
        tasks[queue] = task
        assert task.spent == 60 and task.forward_nfe == 60  # the budget, kept exactly either way
        assert len(study.trials) == len(task.finals)  # one trial per scored image, the queued ones included
    one, queued = tasks[False], tasks[True]
    assert [f.candidate.describe() for f in queued.finals] == [f.candidate.describe() for f in one.finals]
    assert [f.nfe for f in queued.finals] == [f.nfe for f in one.finals]
    np.testing.assert_allclose([f.scores for f in queued.finals], [f.scores for f in one.finals], rtol=1e-4)
    assert queued.best().candidate.describe() == one.best().candidate.describe()
    ran = [t for t in queued.study.trials if t.user_attrs.get("queued")]
    assert ran and all(t.user_attrs.get("worker") for t in ran)  # run by the trial loop, not added
    assert len(ran) == sum(1 for f in queued.finals if f.candidate.key())  # seeds went out, latents stayed


@pytest.mark.slow
def test_two_workers_choose_the_seeds_one_process_chooses(tmp_path, monkeypatch, capsys):
    (tmp_path / "noise_worker_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned worker imports the reward too
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red boat\na dark sandal\n")
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        argv = ["noise", "--prompts", str(prompts), "--model", "tiny", "--clip", "tiny", "--steps", "3"]
        argv += ["--reward", "noise_worker_rewards:contrast", "--budget-nfe", "51", "--seed", "4"]
        argv += ["--out", str(out), "--workers", str(workers), "--json"]
        assert main(argv) == 0, capsys.readouterr().err
        runs[workers] = json.loads(capsys.readouterr().out)
        if workers == 1:  # searched in one process: nothing for a joining worker to do, said in one line
            first = runs[1]["prompts"][0]["study"]
            assert main(["worker", "--study", first, "--storage", runs[1]["storage"]]) == 2
            assert "hands out no work" in capsys.readouterr().err
    for one, two in zip(runs[1]["prompts"], runs[2]["prompts"]):
        assert one["budget_nfe"] == two["budget_nfe"] == 51
        assert one["spent_nfe"] == two["spent_nfe"] == 48 and two["generations"] == 8  # 6 NFE a generation
        assert (
            two["best"]["seed"] == one["best"]["seed"]
            and two["best"]["nfe_when_found"] == one["best"]["nfe_when_found"]
        )
        assert (
            abs(
                two["best"]["scores"]["noise_worker_rewards:contrast"]
                - one["best"]["scores"]["noise_worker_rewards:contrast"]
            )
            < 1e-4
        )
        assert two["best"]["pipeline_max_abs_diff"] < 1e-4
        study = optuna.load_study(study_name=two["study"], storage=runs[2]["storage"])
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 8 and all(t.user_attrs.get("queued") and t.user_attrs.get("worker") for t in done)
        assert not [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
        assert study.user_attrs["workers"] == 2 and study.user_attrs[FINISHED_ATTR]
    # a second run of the same study reads every generation back: nothing is generated again
    out = tmp_path / "w2"
    argv = ["noise", "--prompts", str(prompts), "--model", "tiny", "--clip", "tiny", "--steps", "3"]
    argv += ["--reward", "noise_worker_rewards:contrast", "--budget-nfe", "51", "--seed", "4"]
    argv += ["--out", str(out), "--workers", "2", "--json"]
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["best"]["seed"] for r in again["prompts"]] == [r["best"]["seed"] for r in runs[1]["prompts"]]
    study = optuna.load_study(study_name=again["prompts"][0]["study"], storage=again["storage"])
    assert len([t for t in study.trials if t.user_attrs.get("queued")]) == 8  # the read-backs are recorded as such
