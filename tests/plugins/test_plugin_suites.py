"""A third party's searchers, one of each kind, written only against diffsearch.testing and docs/plugins.md:
installed as a package with entry points (a module and its *.dist-info on PYTHONPATH), they pass the shipped
suites in the third party's own test file, and run from the command line with ``--workers 2``."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from helpers import write_dist_info

ROOT = Path(__file__).resolve().parents[2]

MODULE = textwrap.dedent('''
    """Three searchers of a third party: one per search problem of diffsearch."""
    import random

    import optuna

    from diffsearch.searchers.prompt_result import PromptSearchResult
    from diffsearch.searchers.registry import SearcherEntry
    from diffsearch.searchers.tree_budget import TreeBudget


    def make_halton(seed):
        return optuna.samplers.QMCSampler(qmc_type="halton", scramble=True, seed=seed)


    HALTON = SearcherEntry(make_halton, "scrambled Halton points (Optuna QMCSampler)")


    class batched_random:
        """Random update rules, trained a batch at a time (one rule per worker)."""
        JOB = "optimizer"

        @staticmethod
        def search(space, evaluate, budget, seed, settings):
            import numpy as np

            rng = np.random.default_rng(seed)
            tree_budget = TreeBudget(space, evaluate, budget)
            misses = 0
            while tree_budget.left > 0 and misses < 1000:
                misses = 0 if tree_budget.admit(space.sample(rng)) else misses + 1
                if len(tree_budget.pending) >= max(1, settings.batch):
                    tree_budget.flush()
            tree_budget.flush()
            return tree_budget, {"batches_of": max(1, settings.batch)}


    class coordinate:
        """One slot at a time, in a seeded order: each takes its best choice, the others held."""
        JOB = "prompt"

        @staticmethod
        def search(task, space, seed, settings):
            point = list(space.user_point())
            order = list(range(len(space.sizes())))
            random.Random(seed).shuffle(order)
            for slot in order:
                if task.exhausted:
                    break
                candidates = [tuple(point[:slot] + [c] + point[slot + 1:]) for c in range(space.sizes()[slot])]
                results = task.evaluate_many(candidates)
                scored = [(r.value, c) for r, c in zip(results, candidates) if r.value is not None]
                if scored:
                    point = list(min(scored)[1])
            return PromptSearchResult()
''')
ENTRY_POINTS = textwrap.dedent("""
    [diffsearch.searchers]
    halton = third_party_suites:HALTON
    batched-random = third_party_suites:batched_random
    coordinate = third_party_suites:coordinate
""")
TESTS = textwrap.dedent("""
    import pytest

    from diffsearch.testing import HparamsSearcherSuite, PromptSearcherSuite, TreeSearcherSuite


    class TestHalton(HparamsSearcherSuite):
        @pytest.fixture
        def name(self):
            return "halton"


    class TestBatchedRandom(TreeSearcherSuite):
        @pytest.fixture
        def name(self):
            return "batched-random"


    class TestCoordinate(PromptSearcherSuite):
        @pytest.fixture
        def name(self):
            return "coordinate"
""")


@pytest.fixture
def package(tmp_path):
    root = write_dist_info(tmp_path / "pkg", "third-party-suites", ENTRY_POINTS)
    (root / "third_party_suites.py").write_text(MODULE)
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_third_party.py").write_text(TESTS)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(root), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )
    return tmp_path, env


def run(argv, env, cwd, timeout=600):
    return subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_third_partys_searchers_pass_the_shipped_suites_and_run_with_two_workers(package):
    tmp_path, env = package
    suites = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_third_party.py"], env, tmp_path / "suite")
    assert suites.returncode == 0, suites.stdout[-3000:] + suites.stderr[-2000:]
    assert "9 passed" in suites.stdout

    out = tmp_path / "optimizer"
    optimizer = run(
        [
            "-m",
            "diffsearch",
            "optimizer",
            "--searcher",
            "batched-random",
            "--budget",
            "4",
            "--scale",
            "0.03",
            "--baselines",
            "none",
            "--top",
            "1",
            "--workers",
            "2",
            "--out",
            str(out),
            "--json",
        ],
        env,
        tmp_path,
    )
    assert optimizer.returncode == 0 and "Traceback" not in optimizer.stderr, optimizer.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["search"]["evaluated"] == 4 and results["batches_of"] == 2  # --workers sets the batch
    study = optuna.load_study(study_name="optimizer-toy2d-moons-batched-random", storage=f"sqlite:///{out}/study.db")
    assert len({t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}) >= 1

    out = tmp_path / "prompt"
    prompt = run(
        [
            "-m",
            "diffsearch",
            "prompt",
            "a happy old man reading a book",
            "--searcher",
            "coordinate",
            "--model",
            "tiny",
            "--clip",
            "tiny",
            "--steps",
            "4",
            "--budget",
            "3",
            "--workers",
            "2",
            "--out",
            str(out),
            "--json",
        ],
        env,
        tmp_path,
    )
    assert prompt.returncode == 0 and "Traceback" not in prompt.stderr, prompt.stderr[-3000:]
    assert json.loads((out / "results.json").read_text())["options"]["searcher"] == "coordinate"
