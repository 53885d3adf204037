"""Prompt generations handed to a `diffsearch worker` process through the study (tiny models)."""

import subprocess
import sys

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from diffsearch.jobs.prompt import Models, PromptOptions, study_attrs
from diffsearch.ledger import create_or_load_study, open_storage
from diffsearch.spaces.prompts import build_space
from diffsearch.tasks.prompt_sd import PromptTask
from diffsearch.ledger import FINISHED_ATTR

pytestmark = pytest.mark.slow  # a `diffsearch worker` process loads the models and generates the batch
PROMPT = "a happy old man reading a book"


def _task(options, models, study):
    space = build_space(
        options.space,
        PROMPT,
        models.lexicon,
        models.one_token,
        models.backend.max_tokens(),
        lambda s: len(models.backend.token_ids(s)),
    )
    return PromptTask(models.backend, models.reward, space, study, options.task, tuple(range(options.seeds)), budget=10)


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_a_joining_worker_generates_the_batch_and_the_search_reads_it_back(tmp_path, name, request):
    model = name if name == "tiny" else request.getfixturevalue("family_dirs")[name]
    family = {"steps": 6, "seeds": 2} if name == "tiny" else {"steps": 3, "seeds": 1}  # SD 1.x: as before
    if name == "tiny-flux":
        family.update(size=16, true_cfg=3.0)  # FLUX's default size is 128 latent pixels; true CFG: negatives act
    options = PromptOptions(
        prompt=PROMPT,
        model=model,
        clip="tiny",
        space="antonym+library",
        lexicon_cache=str(tmp_path / "lexicon.json"),
        **family,
    ).resolved()
    models = Models(options)
    storage_url = str(tmp_path / "prompts.log")
    study = create_or_load_study(
        open_storage(storage_url, heartbeat=1), "shared", {**study_attrs(options, PROMPT), FINISHED_ATTR: False}
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
            storage_url,
            "--heartbeat",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        task = _task(options, models, study)
        task.runner.waiting = lambda: False  # this process only waits: every image comes from the worker
        points = [task.space.user_point()] + [task.space.sample(np.random.default_rng(i)) for i in range(3)]
        shared = task.evaluate_many(points)
    finally:
        study.set_user_attr(FINISHED_ATTR, True)
    assert worker.wait(timeout=60) == 0, worker.communicate()[1].decode()[-2000:]
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(trials) == len({tuple(p) for p in points}) and all(e.loss is not None for e in shared)
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials} == {str(worker.pid)}
    # the same points generated here give the same losses: the worker rebuilt the same models
    local = _task(options, models, optuna.create_study())
    for evaluation, point in zip(shared, points):
        assert local.evaluate(point).loss == pytest.approx(evaluation.loss, rel=1e-4, abs=1e-6)
