"""``PromptSearcherSuite``: what every prompt searcher (``diffsearch prompt --searcher``) must do, on a tiny
Stable Diffusion and a tiny CLIP built from configs (no download; seconds per run on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from diffsearch.backends.stable_diffusion import load_backend
from diffsearch.datasets.lexicon import Lexicon
from diffsearch.objectives.rewards import RewardSpec
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS
from diffsearch.searchers.prompt.result import PromptSearcher, PromptSearchResult, PromptSearchSettings
from diffsearch.spaces.prompts import PromptSpace, build_space
from diffsearch.tasks.prompt_sd import PromptTask

PROMPT = "a happy old man reading a book"


class PromptSearcherSuite:
    """Subclass and give the fixture ``name`` (the searcher's registry or entry point name)."""

    budget = 4
    _runs: dict[tuple[type, str, int], tuple[list[Any], PromptTask, Any]] = {}  # the first run of each seed

    @pytest.fixture
    def name(self) -> str:
        raise NotImplementedError("give the fixture `name`: the searcher's registry or entry point name")

    @pytest.fixture(scope="class")
    @classmethod
    def setup(cls, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, PromptSpace]:
        backend = load_backend("tiny", steps=4)
        one = lambda w: len(backend.token_ids(w)) == 1  # noqa: E731
        lexicon = Lexicon("wordnet", one, tmp_path_factory.mktemp("lexicon") / "cache.json")
        space = build_space(
            "antonym+library", PROMPT, lexicon, one, backend.max_tokens(), lambda s: len(backend.token_ids(s))
        )
        return backend, RewardSpec("clip", clip="tiny").load(), space

    def run(
        self, name: str, setup: tuple[Any, Any, PromptSpace], seed: int, again: bool = False
    ) -> tuple[list[Any], PromptTask, Any]:
        """A search of ``self.budget`` generations; the first run of a seed is kept for the other checks
        (each costs seconds), ``again`` runs anew."""
        key = (type(self), name, seed)
        if not again and key in self._runs:
            return self._runs[key]
        backend, reward, space = setup
        searcher: PromptSearcher = PROMPT_SEARCHERS.lookup(name, "--searcher").value
        task = PromptTask(backend, reward, space, optuna.create_study(), seeds=(0,), budget=self.budget)
        found = searcher(task, space, seed, PromptSearchSettings(iterations=2))
        if not again:
            self._runs[key] = (list(task.seen), task, found)
        return list(task.seen), task, found

    def test_the_same_seed_gives_the_same_run(self, name: str, setup: tuple[Any, Any, PromptSpace]) -> None:
        points, _, found = self.run(name, setup, seed=3)
        assert isinstance(found, PromptSearchResult), "search() returns a PromptSearchResult"
        again, _, _ = self.run(name, setup, seed=3, again=True)
        assert again == points, "the same seed evaluated other points, or in another order"

    def test_the_budget_is_kept(self, name: str, setup: tuple[Any, Any, PromptSpace]) -> None:
        points, task, _ = self.run(name, setup, seed=3)
        assert points, "nothing was evaluated"
        assert task.budget - 1 < task.spent <= task.budget + 1e-9, f"spent {task.spent} of {task.budget}"

    def test_bad_input_is_refused_in_one_line(
        self, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from diffsearch.testing.cli import assert_refused

        assert_refused(["prompt", "a cat", "--searcher", name, "--budget", "0"], "--budget", tmp_path / "run", capsys)
        assert_refused(
            ["prompt", "a cat", "--searcher", name + "-misspelt"],
            f"known: {', '.join(PROMPT_SEARCHERS)}",
            tmp_path / "run",
            capsys,
        )
