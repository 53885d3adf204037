"""``TreeSearcherSuite``: what every update-rule searcher (``diffsearch optimizer --searcher``) must do."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from diffsearch.searchers.tree.budget import TreeBudget, TreeSearcher
from diffsearch.searchers.tree.registry import TREE_SEARCHERS, TreeSearchSettings
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import Program


class Recorded:
    """A cheap, deterministic ``TreeEvaluator`` (a hash of the rule's canonical key) that records each
    program it trains and each batch ``many`` was given."""

    def __init__(self, space: UpdateRuleSpace) -> None:
        self.space = space
        self.keys: list[str] = []
        self.batches: list[int] = []

    def __call__(self, program: Program) -> float:
        return self.many([program])[0]

    def many(self, programs: Sequence[Program]) -> list[float]:
        self.batches.append(len(programs))
        keys = [self.space.key(p) for p in programs]
        self.keys += keys
        return [int(hashlib.md5(k.encode()).hexdigest()[:8], 16) / 2**32 for k in keys]


class TreeSearcherSuite:
    """Subclass and give the fixture ``name`` (the searcher's registry or entry point name)."""

    budget = 12

    @pytest.fixture
    def name(self) -> str:
        raise NotImplementedError("give the fixture `name`: the searcher's registry or entry point name")

    @pytest.fixture
    def settings(self) -> TreeSearchSettings:
        return TreeSearchSettings(levels=3, batch=2)

    @pytest.fixture
    def space(self) -> UpdateRuleSpace:
        return UpdateRuleSpace()

    def run(
        self, name: str, space: UpdateRuleSpace, settings: TreeSearchSettings, seed: int
    ) -> tuple[Recorded, TreeBudget, dict[str, Any]]:
        searcher: TreeSearcher = TREE_SEARCHERS.lookup(name, "searcher").value
        evaluate = Recorded(space)
        tree_budget, extras = searcher(space, evaluate, self.budget, seed, settings)
        return evaluate, tree_budget, extras

    def test_the_same_seed_gives_the_same_run(
        self, name: str, space: UpdateRuleSpace, settings: TreeSearchSettings
    ) -> None:
        first, _, _ = self.run(name, space, settings, seed=5)
        again, _, _ = self.run(name, space, settings, seed=5)
        other, _, _ = self.run(name, space, settings, seed=6)
        assert again.keys == first.keys, "the same seed trained other rules, or in another order"
        assert other.keys != first.keys, "another seed trained the same rules: is the seed used?"

    def test_the_budget_is_spent_exactly(self, name: str, space: UpdateRuleSpace, settings: TreeSearchSettings) -> None:
        evaluate, tree_budget, extras = self.run(name, space, settings, seed=5)
        assert isinstance(tree_budget, TreeBudget) and isinstance(extras, dict)
        assert len(evaluate.keys) == tree_budget.used == self.budget, "trained a rule more or less than the budget"
        assert len(set(evaluate.keys)) == self.budget, "trained one rule twice (admit through the TreeBudget)"

    def test_bad_input_is_refused_in_one_line(
        self, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from diffsearch.testing.cli import assert_refused

        assert_refused(["optimizer", "--searcher", name, "--budget", "0"], "--budget", tmp_path / "run", capsys)
        assert_refused(
            ["optimizer", "--searcher", name + "-misspelt"],
            f"known: {', '.join(TREE_SEARCHERS)}",
            tmp_path / "run",
            capsys,
        )
