"""Tree searchers over update rules (MCT, random, evolution) against cheap recorded objectives."""

import math

import pytest

from diffsearch.searchers.tree.mct import mct_search, thresholded_mean
from diffsearch.searchers.tree.evolution import evolution_search, primitive_set, to_tokens, to_tree
from diffsearch.searchers.tree.random_search import random_tree_search
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import parse

SPACE = UpdateRuleSpace()


class Counting:
    """A cheap objective that records every program it is asked to train."""

    def __init__(self, score=lambda p: float(len(p))):
        self.calls, self.score = [], score

    def __call__(self, program):
        self.calls.append(program)
        return self.score(program)


@pytest.mark.parametrize("budget, levels", [(37, 4), (8, 4), (12, 3), (5, 1)])
def test_mct_budget_accounting_is_exact(budget, levels):
    objective = Counting()
    book, history = mct_search(SPACE, objective, budget=budget, levels=levels, seed=3)
    assert len(objective.calls) == book.used == budget
    keys = [SPACE.key(p) for p in objective.calls]
    assert len(set(keys)) == budget  # no duplicate trained
    assert all(SPACE.check(p) is None for p in objective.calls)  # no rejected program trained
    assert book.duplicates + len(book.rejected) + budget == book.proposed
    per_level = [sum(r.counts.values()) for r in history]
    assert per_level[0] == budget // levels + (1 if budget % levels else 0)


def test_mct_moves_to_the_best_mean_child():
    # rules rooted at "div" score 0, everything else 1: the first level must pick "div"
    objective = Counting(lambda p: 0.0 if p[0] == "div" else 1.0)
    book, history = mct_search(SPACE, objective, budget=64, levels=2, seed=0)
    assert history[0].chosen == "div"
    assert all(p[0] == "div" for p in objective.calls[len(objective.calls) - 32 :])
    assert history[1].node == "div"


def test_score_thresholding():
    assert thresholded_mean([0.5, 0.7, 2.0, math.inf], threshold=1.0) == pytest.approx(0.6)
    assert thresholded_mean([2.0, math.inf], threshold=1.0) == math.inf


@pytest.mark.parametrize("search", [random_tree_search, evolution_search])
def test_random_and_evolution_use_exactly_the_budget(search):
    objective = Counting()
    book = search(SPACE, objective, budget=30, seed=1)
    assert len(objective.calls) == book.used == 30
    assert len({SPACE.key(p) for p in objective.calls}) == 30
    assert all(SPACE.check(p) is None and len(p) <= SPACE.max_length for p in objective.calls)


def test_evolution_improves_on_its_initial_population():
    objective = Counting(lambda p: 1.0 / (1 + len(p)))  # longer is better: crossover must grow trees
    book = evolution_search(SPACE, objective, budget=60, seed=0, population=8)
    initial_best = min(objective.score(p) for p in objective.calls[:8])
    assert book.best()[1] < initial_best and len(book.best()[0]) == SPACE.max_length


def test_evolution_started_from_adam_breeds_from_it():
    adam = parse("m1h / sqrt(m2h)")
    # near Adam is good: the score counts the tokens a program shares with Adam's
    objective = Counting(lambda p: -float(sum(a == b for a, b in zip(p, adam))) + 0.01 * len(p))
    evolution_search(SPACE, objective, budget=40, seed=0, population=8, start=[adam])
    assert objective.calls[0] == adam
    cold = Counting(objective.score)
    evolution_search(SPACE, cold, budget=40, seed=0, population=8)
    assert adam not in cold.calls
    near_adam = [sum(p[:2] == adam[:2] for p in run.calls[8:]) for run in (objective, cold)]
    assert near_adam[0] >= 10 > near_adam[1]  # children keep Adam's `m1h / ...` when the search starts there


def test_deap_trees_round_trip():
    pset = primitive_set()
    for text in ("exp(ld * sg * sm1) * g", "(1 + sg * sm1) * g", "m1h / sqrt(m2h)"):
        assert to_tokens(to_tree(parse(text), pset)) == parse(text)


class Batched(Counting):
    """Records the batches a searcher hands over at once (what workers would train in parallel)."""

    def __init__(self, score=lambda p: float(len(p))):
        super().__init__(score)
        self.batches = []

    def many(self, programs):
        self.batches.append(len(programs))
        return [self(p) for p in programs]


def test_mct_trains_each_level_as_one_batch():
    objective = Batched()
    book, _ = mct_search(SPACE, objective, budget=40, levels=4, seed=3)
    assert objective.batches[:4] == [10, 10, 10, 10] and book.used == 40


@pytest.mark.parametrize("batch", [1, 4])
def test_evolution_breeds_batches_of_children(batch):
    objective = Batched(lambda p: 1.0 / (1 + len(p)))
    book = evolution_search(SPACE, objective, budget=30, seed=0, population=8, batch=batch)
    assert objective.batches[0] == 8 and max(objective.batches[1:]) == batch
    assert book.used == len(objective.calls) == 30 == len({SPACE.key(p) for p in objective.calls})


def test_random_search_trains_everything_in_one_batch():
    objective = Batched()
    random_tree_search(SPACE, objective, budget=30, seed=1)
    assert objective.batches == [30]
