"""Searchers and spaces of other packages, by entry points: a tiny package (a module and its *.dist-info
with entry_points.txt) on the path, found by the registries, `diffsearch list` and spawned workers."""

import os
import subprocess
import sys
import textwrap

import optuna
import pytest

from diffsearch import plugins
from diffsearch.cli.main import main
from diffsearch.errors import UsageError
from diffsearch.searchers.prompt.registry import get_prompt_searcher, prompt_searchers
from diffsearch.searchers.hparams.registry import hparams_searchers, make_sampler
from diffsearch.spaces.training import get_space, training_spaces
from helpers import write_dist_info

MODULE = textwrap.dedent('''
    """diffsearch searchers and spaces of a third party."""
    import os
    import time

    import optuna

    from diffsearch.searchers.hparams.registry import SearcherEntry
    from diffsearch.spaces.training import TrainingSpace


    CALLS = []


    def make_qmc(seed):
        CALLS.append(seed)
        marker = os.environ.get("PLUGIN_MARKER")
        if marker:  # which processes built it: the job's and its spawned workers
            with open(marker, "a") as file:
                file.write(f"{os.getpid()}\\n")
            # the job's own search (its 2nd call; the 1st checks the name) waits for a spawned worker to
            # build one too, so the test sees the worker's lookup however slowly the machine starts it
            deadline = time.monotonic() + 240
            while len(CALLS) == 2 and len(set(open(marker).read().split())) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)


    QMC = SearcherEntry(make_qmc, "quasi-Monte Carlo (Optuna QMCSampler)")
    NARROW = TrainingSpace(
        name="toy2d-narrow", description="2-D, lr 1e-4..1e-3, one batch size, 20 timesteps",
        lr_range=(1e-4, 1e-3), batch_sizes=(1024,), timesteps=(20,), noise_schedules=None,
        fixed={"beta_schedule": "squaredcos_cap_v2"},
        baselines={"default": {"lr": 1e-3, "lr_scheduler": "linear", "batch_size": 1024, "optimizer": "adam",
                               "num_train_timesteps": 20}})
    MISNAMED = TrainingSpace(name="other", description="", lr_range=(1e-4, 1e-3), batch_sizes=(1024,),
                             timesteps=None, noise_schedules=None)


    class greedy:
        """A prompt searcher module stand-in: evaluates the user's prompt only."""
        JOB = "prompt"

        @staticmethod
        def search(task, space, seed, settings):
            return task.evaluate(space.user_point())
''')
ENTRY_POINTS = textwrap.dedent("""
    [diffsearch.searchers]
    qmc = third_party_search:QMC
    optuna-random = optuna.samplers:RandomSampler
    tpe = optuna.samplers:QMCSampler
    greedy = third_party_search:greedy

    [diffsearch.spaces]
    toy2d-narrow = third_party_search:NARROW
""")
BROKEN = textwrap.dedent("""
    [diffsearch.searchers]
    broken = no_such_module_xyz:searcher
    not-a-searcher = os:sep

    [diffsearch.spaces]
    misnamed = third_party_search:MISNAMED
""")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # QMCSampler
CHEAP = ["--points", "3000", "--held-out", "1000", "--epochs", "2", "--baseline-runs", "0"]


def write_package(root, name, entry_points, module=None):
    """A distribution as pip leaves it in site-packages: its module and ``NAME-0.1.dist-info``."""
    write_dist_info(root, name, entry_points)
    if module:
        (root / "third_party_search.py").write_text(module)
    return root


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The good package on sys.path (and the broken one beside it), with the plugin caches reset."""
    good = write_package(tmp_path / "good", "third-party-search", ENTRY_POINTS, MODULE)
    bad = write_package(tmp_path / "bad", "broken-search", BROKEN)
    for path in (good, bad):
        monkeypatch.syspath_prepend(str(path))

    plugins.reset()
    yield good, bad
    monkeypatch.undo()
    plugins.reset()


def test_hparams_searchers_and_spaces_come_from_entry_points(installed):
    assert isinstance(make_sampler("qmc", 3), optuna.samplers.QMCSampler)
    assert isinstance(make_sampler("optuna-random", 3), optuna.samplers.RandomSampler)  # a sampler class
    listed = hparams_searchers()
    assert "third-party-search 0.1" in listed["qmc"].description and "optuna-random" in listed
    assert "greedy" not in listed and "greedy" in prompt_searchers()
    assert get_space("toy2d-narrow").batch_sizes == (1024,) and "toy2d-narrow" in training_spaces()
    assert get_prompt_searcher("greedy").value.__name__ == "search"


def test_a_built_in_name_wins_with_one_warning(installed, capsys):
    assert isinstance(make_sampler("tpe", 0), optuna.samplers.TPESampler)
    make_sampler("tpe", 1)
    err = capsys.readouterr().err
    assert err.count("warning: the built-in hparams searcher 'tpe' is used") == 1 and "third-party-search" in err


@pytest.mark.parametrize(
    "ask,message",
    [
        (
            lambda: make_sampler("broken", 0),
            "'broken' (diffsearch.searchers = no_such_module_xyz:searcher) of "
            "package broken-search 0.1 cannot be loaded (ModuleNotFoundError",
        ),
        (lambda: make_sampler("not-a-searcher", 0), "is a str: a searcher entry point is a SearcherEntry"),
        (lambda: make_sampler("greedy", 0), "is a prompt searcher: `diffsearch hparams --searcher` cannot use it"),
        (lambda: get_space("misnamed"), "is the TrainingSpace 'other': the names must match"),
        (lambda: make_sampler("nothing", 0), "unknown searcher 'nothing'; known: random, tpe, gp, generative, qmc"),
    ],
)
def test_bad_entry_points_are_usage_errors(installed, ask, message):
    with pytest.raises(UsageError) as error:
        ask()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_broken_entry_point_is_one_line_exit_2_and_listing_survives(installed, tmp_path, capsys):
    assert main(["hparams", "--searcher", "broken", *CHEAP, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'broken'" in err and "broken-search 0.1" in err
    from diffsearch.cli.listing import rows

    listed = {(kind, name): text for kind, name, text in rows()}
    assert ("hparams searcher", "qmc") in listed and ("hparams space", "toy2d-narrow") in listed
    assert "cannot be loaded" in listed[("broken plugin", "broken")] and ("broken plugin", "misnamed") in listed
    assert "diffsearch: warning: entry point 'broken'" in capsys.readouterr().err


def test_a_plugin_space_drives_an_hparams_run(installed, tmp_path):
    from diffsearch.jobs.hparams import HparamsOptions, run_hparams

    results = run_hparams(
        HparamsOptions(
            searcher="qmc",
            space="toy2d-narrow",
            trials=2,
            epochs=2,
            n_points=3000,
            held_out=1000,
            baseline_runs=0,
            out=str(tmp_path / "run"),
        )
    )
    trials = [t for t in results["trials"] if t["score"] is not None]
    assert len(trials) == 2
    for trial in trials:
        assert trial["params"]["batch_size"] == 1024 and 1e-4 <= trial["params"]["lr"] <= 1e-3
        assert trial["params"]["num_train_timesteps"] == 20


@pytest.mark.slow
def test_list_and_a_search_with_spawned_workers_in_subprocesses(tmp_path):
    good = write_package(tmp_path / "pkg", "third-party-search", ENTRY_POINTS, MODULE)
    marker = tmp_path / "built_by.txt"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(good), os.environ.get("PYTHONPATH", "")]),
        PLUGIN_MARKER=str(marker),
        OMP_NUM_THREADS="1",
        COLUMNS="200",
    )
    listed = subprocess.run(
        [sys.executable, "-m", "diffsearch", "list", "--markdown"], env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr
    assert "| hparams searcher | `qmc` | quasi-Monte Carlo" in listed.stdout
    assert "| hparams space | `toy2d-narrow` |" in listed.stdout and "| prompt searcher | `greedy` |" in listed.stdout
    out = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffsearch",
            "hparams",
            "--searcher",
            "qmc",
            "--trials",
            "2",
            *CHEAP,
            "--workers",
            "2",
            "--out",
            str(out),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    study = optuna.load_study(study_name="hparams-moons-qmc", storage=f"sqlite:///{out}/study.db")
    assert len([t for t in study.trials if t.value is not None]) == 2
    # the spawned worker looked the searcher up again by name and built it in its own process
    assert len(set(marker.read_text().split())) == 2


REWARD_MODULE = textwrap.dedent('''
    """A reward of a third party."""


    def brightness(images, prompt):
        """Mean brightness of each image (higher is better)."""
        return images.mean(dim=(1, 2, 3))


    NOT_A_FUNCTION = 3
''')
REWARD_ENTRY_POINTS = textwrap.dedent("""
    [diffsearch.rewards]
    brightness = third_party_reward:brightness
    three = third_party_reward:NOT_A_FUNCTION
""")


@pytest.fixture
def reward_package(tmp_path, monkeypatch):
    root = write_dist_info(tmp_path / "rewards", "third-party-reward", REWARD_ENTRY_POINTS)
    (root / "third_party_reward.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(root))
    plugins.reset()
    yield root
    monkeypatch.undo()
    plugins.reset()


def test_a_reward_comes_from_an_entry_point(reward_package):
    import torch

    from diffsearch.cli.listing import rows
    from diffsearch.objectives.rewards import RewardSpec

    reward = RewardSpec("brightness").load()
    images = torch.stack([torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.7)])
    assert reward.name == "brightness" and reward.differentiable  # its mean carries a gradient
    assert torch.allclose(reward.score(images, "a cat"), torch.tensor([0.2, 0.7]))
    assert torch.allclose(reward.loss(images, "a cat"), -torch.tensor([0.2, 0.7]))
    listed = {(kind, name): text for kind, name, text in rows()}
    assert listed[("prompt reward", "brightness")].startswith("Mean brightness of each image")
    assert "third-party-reward 0.1" in listed[("prompt reward", "brightness")]
    assert "a reward entry point is a function" in listed[("broken plugin", "three")]
    for name, message in [
        ("three", "is a int: a reward entry point is a function(images, prompt) -> scores"),
        ("nothing", "unknown --reward 'nothing'; known: clip, pickscore, hpsv2, brightness, or MODULE:FUNCTION"),
    ]:
        with pytest.raises(UsageError) as error:
            RewardSpec(name).check()
        assert message in str(error.value) and "\n" not in str(error.value)


def test_a_plugin_reward_is_the_verifier_of_a_noise_search(reward_package, tmp_path, capsys):
    import json

    argv = ["noise", "a red boat", "--model", "tiny", "--clip", "tiny", "--steps", "3", "--reward", "brightness"]
    assert main([*argv, "--budget-nfe", "24", "--out", str(tmp_path / "run"), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["prompts"]
    assert (
        result["spent_nfe"] == 24 and result["best"]["scores"]["brightness"] >= result["user"]["scores"]["brightness"]
    )
