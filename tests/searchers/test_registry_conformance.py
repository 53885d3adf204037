"""The searcher registries themselves: a bad name or a bad space is refused with one line before anything
runs, every entry describes itself in one line, and the gradient searchers return what they learned.

The contract of each entry (seeded, exact budget, one-line refusal) is diffsearch.testing's suites, run over
every registry entry in tests/test_conformance.py.
"""

import optuna
import pytest

from diffsearch.backends.stable_diffusion import load_backend
from diffsearch.cli.main import main
from diffsearch.datasets.lexicon import Lexicon
from diffsearch.errors import UsageError
from diffsearch.objectives.clip import ClipObjective
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS, get_prompt_searcher
from diffsearch.searchers.prompt.result import PromptSearchSettings
from diffsearch.searchers.tree.registry import TREE_SEARCHERS, get_tree_searcher
from diffsearch.spaces.prompts import build_space
from diffsearch.tasks.prompt_sd import PromptTask


@pytest.mark.parametrize(
    "argv, words",
    [
        (["optimizer", "--searcher", "bogus"], "unknown searcher 'bogus'"),
        (["optimizer", "--max-length", "0"], "--max-length"),
        (["prompt", "a cat", "--searcher", "bogus"], "unknown --searcher 'bogus'"),
        (["prompt", "a cat", "--space", "bogus"], "unknown --space 'bogus'"),
        (["hparams", "--searcher", "bogus"], "unknown searcher 'bogus'"),
    ],
)
def test_bad_searcher_or_space_is_refused_in_one_line(argv, words, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "run" / "study.db").exists()  # nothing written to a study


def test_registries_name_their_entries_in_one_line_each():
    for registry in (TREE_SEARCHERS, PROMPT_SEARCHERS):
        for name, entry in registry.items():
            assert callable(entry.value) and entry.description and "\n" not in entry.description
    with pytest.raises(UsageError, match="known: mct, random, evolution"):
        get_tree_searcher("nope")


@pytest.mark.slow
@pytest.mark.parametrize("name", PROMPT_SEARCHERS.with_capability("needs_gradient"))
def test_what_a_gradient_searcher_learned_comes_back_in_its_result(name, tmp_path):
    backend = load_backend("tiny", steps=4)
    one = lambda w: len(backend.token_ids(w)) == 1  # noqa: E731
    space = build_space(
        "antonym+library",
        "a happy old man reading a book",
        Lexicon("wordnet", one, tmp_path / "c.json"),
        one,
        backend.max_tokens(),
        lambda s: len(backend.token_ids(s)),
    )
    task = PromptTask(backend, ClipObjective("tiny"), space, optuna.create_study(), seeds=(0,), budget=4)
    found = get_prompt_searcher(name).value(task, space, 3, PromptSearchSettings(iterations=2))
    assert found.learned_logits is not None and found.gradient_steps
    assert not hasattr(task, "learned_logits") and not hasattr(task, "gradient_log")
