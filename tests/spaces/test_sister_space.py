"""The sister-term space: negative prompts from WordNet co-hyponyms of a prompt's nouns (offline analogue of
the opposite concepts DPO-Diff, Wang et al., ICML 2024, asks a language model for)."""

import json
import os
import subprocess
import sys

import pytest

from diffsearch.backends import fashion_sd as fs
from diffsearch.backends.tiny_sd import clip_tokenizer
from diffsearch.datasets import lexicon as lexicon_module
from diffsearch.datasets.lexicon import Lexicon, wordnet_head_noun, wordnet_sister_terms
from diffsearch.errors import UsageError
from diffsearch.spaces.prompts import PROMPT_SPACES, build_space, noun_heads, split_words

SHOES = {"sandal", "boot", "slipper", "shoe", "sneaker", "flats"}
GARMENTS = {"shirt", "suit", "coat", "robe", "skirt", "hat", "uniform", "tie", "scarf", "vest", "cap", "veil"}
CONTAINERS = {"box", "case", "basket", "cup", "dish", "glass", "envelope"}
EXPECTED = {
    "t-shirt": GARMENTS,
    "pair of trousers": GARMENTS,
    "pullover": GARMENTS,
    "dress": GARMENTS,
    "coat": GARMENTS,
    "sandal": SHOES,
    "shirt": GARMENTS,
    "sneaker": SHOES,
    "bag": CONTAINERS,
    "ankle boot": SHOES,
}


@pytest.fixture(scope="module")
def words():
    """The one-token rule of the prompt job, on CLIP's real BPE vocabulary (SD's tokenizer)."""
    tokenizer = clip_tokenizer()

    def count(text):
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    return (lambda w: count(w) <= 1), count, tokenizer.model_max_length - 2


def space_of(prompt, words, tmp_path, name="sister", one=None):
    one_token, count, max_tokens = words
    one = one or one_token
    return build_space(name, prompt, Lexicon("wordnet", one, tmp_path / "lexicon.json"), one, max_tokens, count)


def test_sister_terms_are_other_kinds_of_the_same_thing_never_the_thing_or_its_kind():
    found = wordnet_sister_terms("sneaker")
    assert found[0] == "sandal" and "boot" in found[:6]  # shoe's other hyponyms, then footwear's family
    assert not {"sneaker", "gym shoe", "shoe", "footwear", "clothing"} & set(found)  # itself, what it is a kind of
    dress = wordnet_sister_terms("dress")
    assert {"shirt", "suit"} <= set(dress[:6]) and not {"apparel", "attire"} & set(dress)  # also "dress" in WordNet
    assert wordnet_sister_terms("dark large") == [] and wordnet_sister_terms("tennis shoe")[0] == "sandal"


@pytest.mark.slow  # two fresh processes that each load WordNet
def test_sister_terms_do_not_depend_on_the_process():
    # NLTK hands related synsets over in a set's order; the ranking must not follow it (hash seeds differ)
    code = "from diffsearch.datasets.lexicon import wordnet_sister_terms as s; print(s('coat')[:12])"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2)
    }
    assert len(outs) == 1 and "shirt" in outs.pop()


@pytest.mark.parametrize(
    "words_in_run,next_word,after_article,head",
    [
        (["dark", "large", "sneaker"], None, True, (2, 3)),  # adjectives are never heads
        (["ankle", "boot"], None, True, (1, 2)),  # not a WordNet compound: its head noun
        (["bright", "tennis", "shoe"], None, True, (1, 3)),  # a WordNet compound stays whole
        (["pair"], "of", True, None),  # a measure word before "of" is no head
        (["photo"], "of", True, (0, 1)),  # a thing before "of" is
        (["dedicated", "gardener", "tending"], None, True, (1, 2)),
        (["dress"], None, True, (0, 0 + 1)),  # used more as a verb, but after "a" a noun
        (["dress"], None, False, None),
        (["dark"], None, False, None),
    ],
)
def test_noun_phrase_heads(words_in_run, next_word, after_article, head):
    assert wordnet_head_noun(words_in_run, next_word, after_article) == head


def test_heads_of_multi_word_class_names():
    def heads(prompt):
        return list(noun_heads(split_words(prompt)).values())

    assert heads("a photo of a dark large sneaker") == ["photo", "sneaker"]
    assert heads("a photo of an ankle boot") == ["photo", "boot"]
    assert heads("a picture of a pair of trousers") == ["picture", "trousers"]
    assert heads("a bright tennis shoe, a bag") == ["tennis shoe", "bag"]


@pytest.mark.parametrize("label", range(10), ids=fs.PLAIN)
def test_each_fashion_class_gets_sensible_negative_concepts(label, words, tmp_path):
    name = fs.PLAIN[label]
    space = space_of(f"a {name}", words, tmp_path)
    assert len(space.slots) == 1, [s.name for s in space.slots]  # one noun phrase, one slot
    slot = space.slots[0]
    assert slot.choices[0] == "" and 3 <= len(slot.choices) <= 6
    candidates = set(slot.choices[1:])
    assert len(candidates & EXPECTED[name]) >= 2, candidates
    assert not candidates & {w for n in fs.CLASS_NAMES[label] for w in n.split()}  # never the asked class


def test_the_space_is_a_negative_prompt_around_the_users_words(words, tmp_path):
    prompt = "a photo of a dark large sneaker"
    space = space_of(prompt, words, tmp_path)
    assert [s.name for s in space.slots] == ["sis:photo", "sis:sneaker"]
    assert space.texts(space.user_point()) == (prompt, "")
    point = (0, 2)
    assert space.texts(point) == (prompt, space.slots[1].choices[2])
    assert space.from_params(space.to_params(point)) == point
    assert "sister" in PROMPT_SPACES and "WordNet" in PROMPT_SPACES["sister"].description


def test_the_word_token_limit_holds(words, tmp_path):
    one_token, count, _ = words
    space = space_of("a photo of a sneaker", words, tmp_path)
    assert all(one_token(c) for s in space.slots for c in s.choices[1:])
    wide = space_of("a photo of a sneaker", words, tmp_path / "wide", one=lambda w: count(w) <= 3)
    choices = {c for s in wide.slots for c in s.choices}
    assert any(count(c) > 1 for c in choices) and all(count(c) <= 3 for c in choices if c)


def test_a_prompt_without_nouns_is_refused_in_one_line(words, tmp_path):
    with pytest.raises(UsageError, match="sister space .* is empty: no word has a short enough sister term"):
        space_of("very dark and quite large", words, tmp_path)


def test_lexicon_caches_sister_terms_and_refuses_unknown_kinds(tmp_path):
    cache = tmp_path / "lexicon.json"
    lexicon = Lexicon("wordnet", lambda w: " " not in w, cache)
    assert lexicon.lookup("sister", "ankle boot", "an ankle boot") == []  # not in WordNet as a compound
    found = lexicon.lookup("sister", "sneaker", "a sneaker")
    assert found[0] == "sandal" and "boot" in found and len(found) == 5 and all(" " not in w for w in found)
    assert json.loads(cache.read_text())["sister|sneaker"][:4] == ["sandal", "clodhopper", "congress gaiter", "boot"]
    with pytest.raises(ValueError, match="unknown lexicon kind"):
        lexicon.lookup("meronym", "sneaker", "a sneaker")


def test_the_llm_provider_is_asked_for_concepts_of_the_same_kind(tmp_path, monkeypatch):
    asked = []

    def answer(kind, word, sentence, url, model):
        asked.append(lexicon_module.LLM_INSTRUCTIONS[kind].format(n=5, word=word, sentence=sentence))
        return ["sandal", "high heel"]

    monkeypatch.setattr(lexicon_module, "llm_substitutes", answer)
    lexicon = Lexicon("llm", lambda w: " " not in w, tmp_path / "llm.json", "http://127.0.0.1:9/v1", "m")
    assert lexicon.lookup("sister", "sneaker", "a dark sneaker") == ["sandal"]
    assert 'same kind as "sneaker"' in asked[0] and "a dark sneaker" in asked[0]
