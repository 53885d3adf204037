"""A third party's searchers, one of each kind, written only against diffsearch.testing and docs/plugins.md:
installed as a package with entry points (a module and its *.dist-info on PYTHONPATH), they pass the shipped
suites in the third party's own test file, and run from the command line with ``--workers 2``."""

import importlib
import json
import textwrap

import optuna
import pytest

from diffsearch import plugins
from diffsearch.cli.main import main
from helpers import write_dist_info

pytest_plugins = ["pytester"]

MODULE = textwrap.dedent('''
    """Three searchers of a third party: one per search problem of diffsearch."""
    import random

    import optuna

    from diffsearch.searchers.prompt.result import PromptSearchResult
    from diffsearch.searchers.hparams.registry import SearcherEntry
    from diffsearch.searchers.tree.budget import TreeBudget


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
def package(tmp_path, monkeypatch):
    """The package on sys.path, as pip would leave it (spawned ``--workers`` inherit sys.path)."""
    root = write_dist_info(tmp_path / "pkg", "third-party-suites", ENTRY_POINTS)
    (root / "third_party_suites.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(root))
    plugins.reset()
    yield root
    monkeypatch.undo()
    plugins.reset()


# In process (pytester, and the CLI's ``main``): the suites and the two runs cost seconds, not the
# interpreter and torch start-up of a subprocess each; ``--workers 2`` still spawns a real second process.
@pytest.mark.slow
def test_a_third_partys_searchers_pass_the_shipped_suites_and_run_with_two_workers(package, pytester, tmp_path):
    # pytester forgets the modules the inner run imports; torch cannot be imported twice in one process
    for module in ("torch", "diffsearch.testing", "diffsearch.cli.optimizer", "diffsearch.cli.prompt"):
        importlib.import_module(module)
    pytester.makepyfile(test_third_party=TESTS)
    suites = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    suites.assert_outcomes(passed=9)

    out = tmp_path / "optimizer"
    code = main(
        [
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
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["search"]["evaluated"] == 4 and results["batches_of"] == 2  # --workers sets the batch
    study = optuna.load_study(study_name="optimizer-toy2d-moons-batched-random", storage=f"sqlite:///{out}/study.db")
    assert len({t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}) >= 1

    out = tmp_path / "prompt"
    code = main(
        [
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
        ]
    )
    assert code == 0
    assert json.loads((out / "results.json").read_text())["options"]["searcher"] == "coordinate"
