"""Prompt spaces and searchers on the tiny pipeline with a fixed seed."""

import optuna
import pytest
import torch

from diffsearch.backends.stable_diffusion import SDBackend, load_pipeline
from diffsearch.datasets.lexicon import Lexicon
from diffsearch.objectives.clip import ClipObjective
from diffsearch.searchers.prompt import gpo
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS, get_prompt_searcher
from diffsearch.searchers.prompt.result import PromptSearchSettings
from diffsearch.spaces.prompts import build_space, load_negative_library
from diffsearch.tasks.prompt_sd import PromptTask

PROMPT = "a happy old man reading a book"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    backend = SDBackend(load_pipeline("tiny"), steps=6)
    one = lambda w: len(backend.token_ids(w)) == 1  # noqa: E731
    lexicon = Lexicon("wordnet", one, tmp_path_factory.mktemp("lex") / "cache.json")
    count = lambda s: len(backend.token_ids(s))  # noqa: E731
    return backend, ClipObjective("tiny"), lexicon, one, count


def make_task(setup, space_name="antonym", budget=12, study=None):
    backend, clip, lexicon, one, count = setup
    space = build_space(space_name, PROMPT, lexicon, one, backend.max_tokens(), count)
    study = study or optuna.create_study()
    return PromptTask(backend, clip, space, study, seeds=(0,), budget=budget), space, study


def test_spaces_have_the_users_point_first(setup):
    backend, _, lexicon, one, count = setup
    antonym = build_space("antonym", PROMPT, lexicon, one, backend.max_tokens(), count)
    assert antonym.texts(antonym.user_point()) == (PROMPT, "")
    names = [s.name for s in antonym.slots]
    assert "ant:happy" in names and "unhappy" in antonym.slots[names.index("ant:happy")].choices
    point = tuple(1 for _ in antonym.slots)
    assert antonym.texts(point)[1] == ", ".join(s.choices[1] for s in antonym.slots)
    assert antonym.from_params(antonym.to_params(point)) == point
    synonym = build_space("synonym", PROMPT, lexicon, one, backend.max_tokens(), count)
    assert synonym.texts(synonym.user_point()) == (PROMPT, "")
    both = build_space("antonym+library", PROMPT, lexicon, one, backend.max_tokens(), count)
    assert len(both.slots) == len(antonym.slots) + 4
    library = load_negative_library(one)
    assert 150 <= len(library) <= 230 and all(one(w) for w in library)


def test_gradients_reach_the_gumbel_logits(setup):
    task, space, _ = make_task(setup)
    soft = gpo.SoftPrompt(task.backend, space)
    logits = gpo.initial_logits(space)
    g = torch.Generator().manual_seed(0)
    probs = [torch.softmax(lg + gpo.gumbel(lg.shape, g), 0) for lg in logits]
    loss = task.shortcut_loss(*soft.encode(probs), t_index=gpo.t_schedule(0, 6), k=1)
    loss.backward()
    assert all(lg.grad is not None and lg.grad.abs().sum() > 0 for lg in logits)
    # one-hot weights on real words give exactly the discrete prompt's encoding
    onehot = [torch.nn.functional.one_hot(torch.tensor(1), len(s.choices)).float() for s in space.slots]
    point = tuple(1 for _ in space.slots)
    _, discrete_negative = task.embeddings(point)
    torch.testing.assert_close(soft.encode(onehot)[1], discrete_negative)


@pytest.mark.parametrize("name", list(PROMPT_SEARCHERS))
def test_each_searcher_beats_the_user_input(setup, name):
    task, space, study = make_task(setup)
    user = task.evaluate(space.user_point(), role="user_input")
    get_prompt_searcher(name).value(task, space, 0, PromptSearchSettings())
    best_point, best = task.best()
    assert best.value < user.value and best_point != space.user_point()
    assert task.spent <= task.budget + 1e-9 and task.spent >= task.budget - 1.5
    trials = study.get_trials()
    assert len(trials) == len(task.seen)  # every evaluated prompt is a trial
    assert min(t.value for t in trials if t.value is not None) == best.value


def test_rerun_reads_evaluations_back_from_the_ledger(setup, monkeypatch):
    task, space, study = make_task(setup, budget=6)
    get_prompt_searcher("evolution").value(task, space, 1, PromptSearchSettings())
    first = {p: e.value for p, e in task.seen.items()}
    again, _, _ = make_task(setup, budget=6, study=study)
    monkeypatch.setattr(again, "images", lambda point: pytest.fail("generated again"))
    get_prompt_searcher("evolution").value(again, space, 1, PromptSearchSettings())
    assert {p: e.value for p, e in again.seen.items()} == first and len(study.trials) == len(first)


def test_longer_substitutes_span_several_positions(setup):
    backend, clip, lexicon, _, count = setup
    up_to_3 = lambda w: len(backend.token_ids(w)) <= 3  # noqa: E731
    lex3 = Lexicon("wordnet", up_to_3, lexicon.cache_file)
    space = build_space("antonym", "a dedicated gardener tending a bonsai", lex3, up_to_3, backend.max_tokens(), count)
    names = [s.name for s in space.slots]
    assert "ant:dedicated" in names and "undedicated" in space.slots[names.index("ant:dedicated")].choices
    task = PromptTask(backend, clip, space, optuna.create_study(), seeds=(0,), budget=5)
    soft = gpo.SoftPrompt(backend, space)
    logits = gpo.initial_logits(space)
    task.shortcut_loss(*soft.encode([torch.softmax(lg, 0) for lg in logits]), t_index=3, k=1).backward()
    assert all(lg.grad.abs().sum() > 0 for lg in logits)
    # one-hot on the longest choice of every slot gives the discrete negative prompt exactly
    point = tuple(max(range(len(s.choices)), key=lambda i: count(s.choices[i])) for s in space.slots)
    onehot = [torch.nn.functional.one_hot(torch.tensor(i), len(s.choices)).float() for i, s in zip(point, space.slots)]
    torch.testing.assert_close(soft.encode(onehot)[1], task.embeddings(point)[1])
