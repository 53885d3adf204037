"""The shipped conformance suites (diffsearch.testing) over every entry of the project's registries: a new
entry is tested the moment it is registered."""

import pytest

from diffsearch.objectives.rewards import REWARDS
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS
from diffsearch.searchers.hparams.registry import SEARCHERS
from diffsearch.searchers.tree.registry import TREE_SEARCHERS
from diffsearch.testing import HparamsSearcherSuite, PromptSearcherSuite, RewardSuite, TreeSearcherSuite


class TestTreeSearchers(TreeSearcherSuite):
    @pytest.fixture(params=TREE_SEARCHERS.names())
    def name(self, request):
        return request.param


class TestHparamsSearchers(HparamsSearcherSuite):
    # generative runs Optuna's own sampler suite in tests/searchers/test_generative_sampler_contract.py; a run
    # of it here costs ~1 s per suggestion
    @pytest.fixture(params=[n for n in SEARCHERS.names() if n != "generative"])
    def name(self, request):
        return request.param


@pytest.mark.slow
class TestPromptSearchers(PromptSearcherSuite):
    @pytest.fixture(params=PROMPT_SEARCHERS.names())
    def name(self, request):
        return request.param


class TestRewards(RewardSuite):
    # pickscore and hpsv2 need their published weights (files on disk): tests/objectives/test_rewards.py runs
    # them on tiny models built the same way
    @pytest.fixture(
        params=[n for n in REWARDS.names() if not REWARDS[n].can("takes_model") and not REWARDS[n].can("pattern")]
    )
    def reward_name(self, request):
        return request.param
