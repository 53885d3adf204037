"""One contract over every entry of the tree and prompt searcher registries (Optuna's samplers have
theirs in test_generative_sampler_contract.py): a fixed seed gives the same run, the budget is
respected, and a bad name or a bad space is refused with one line before anything runs.

A new line in a registry is tested here without a new test.
"""

import hashlib

import optuna
import pytest

from diffsearch.backends.stable_diffusion import SDBackend, load_pipeline
from diffsearch.cli.main import main
from diffsearch.datasets.lexicon import Lexicon
from diffsearch.errors import UsageError
from diffsearch.objectives.clip import ClipObjective
from diffsearch.searchers.prompt_registry import PROMPT_SEARCHERS, get_prompt_searcher
from diffsearch.searchers.prompt_result import PromptSearchResult, PromptSearchSettings
from diffsearch.searchers.tree_registry import TREE_SEARCHERS, TreeSearchSettings, get_tree_searcher
from diffsearch.spaces.prompts import build_space
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.tasks.prompt_sd import PromptTask

SPACE = UpdateRuleSpace()


class Recorded:
    """A cheap deterministic objective (a hash of the rule's canonical key) that records each call."""

    def __init__(self):
        self.keys = []

    def __call__(self, program):
        key = SPACE.key(program)
        self.keys.append(key)
        return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 2**32


def _tree_run(name, seed, budget=12):
    evaluate = Recorded()
    tree_budget, extras = get_tree_searcher(name).value(SPACE, evaluate, budget, seed,
                                                   TreeSearchSettings(levels=3, batch=2))
    return evaluate.keys, tree_budget, extras


@pytest.mark.parametrize("name", list(TREE_SEARCHERS))
def test_tree_searcher_is_seeded_and_spends_its_budget_exactly(name):
    keys, tree_budget, extras = _tree_run(name, seed=5)
    assert len(keys) == tree_budget.used == 12 and len(set(keys)) == 12   # no rule trained twice
    assert isinstance(extras, dict)
    again, _, _ = _tree_run(name, seed=5)
    assert again == keys                                            # same seed, same rules in the same order
    other, _, _ = _tree_run(name, seed=6)
    assert other != keys


@pytest.mark.parametrize("argv, words", [
    (["optimizer", "--searcher", "bogus"], "unknown searcher 'bogus'"),
    (["optimizer", "--max-length", "0"], "--max-length"),
    (["prompt", "a cat", "--searcher", "bogus"], "unknown --searcher 'bogus'"),
    (["prompt", "a cat", "--space", "bogus"], "unknown --space 'bogus'"),
    (["hparams", "--searcher", "bogus"], "unknown searcher 'bogus'"),
])
def test_bad_searcher_or_space_is_refused_in_one_line(argv, words, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "run" / "study.db").exists()           # nothing written to a study


def test_registries_name_their_entries_in_one_line_each():
    for registry in (TREE_SEARCHERS, PROMPT_SEARCHERS):
        for name, entry in registry.items():
            assert callable(entry.value) and entry.description and "\n" not in entry.description
    with pytest.raises(UsageError, match="known: mct, random, evolution"):
        get_tree_searcher("nope")


@pytest.fixture(scope="module")
def prompt_setup(tmp_path_factory):
    backend = SDBackend(load_pipeline("tiny"), steps=4)
    one = lambda w: len(backend.token_ids(w)) == 1  # noqa: E731
    lexicon = Lexicon("wordnet", one, tmp_path_factory.mktemp("lex") / "cache.json")
    space = build_space("antonym+library", "a happy old man reading a tree_budget", lexicon, one, backend.max_tokens(),
                        lambda s: len(backend.token_ids(s)))
    return backend, ClipObjective("tiny"), space


def _prompt_run(prompt_setup, name, seed, budget=4):
    backend, clip, space = prompt_setup
    task = PromptTask(backend, clip, space, optuna.create_study(), seeds=(0,), budget=budget)
    found = get_prompt_searcher(name).value(task, space, seed, PromptSearchSettings(iterations=2))
    return list(task.seen), task, found


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROMPT_SEARCHERS))
def test_prompt_searcher_is_seeded_and_keeps_to_its_budget(prompt_setup, name):
    points, task, found = _prompt_run(prompt_setup, name, seed=3)
    assert isinstance(found, PromptSearchResult)
    assert points and task.spent <= task.budget + 1e-9
    if name.startswith("gpo"):  # what the gradient learned comes back in the result, not on the task
        assert found.learned_logits is not None and found.gradient_steps
        assert not hasattr(task, "learned_logits") and not hasattr(task, "gradient_log")
    again, _, _ = _prompt_run(prompt_setup, name, seed=3)
    assert again == points
