"""Prompt spaces of DPO-Diff: slots of word choices around a user's prompt.

A point is a tuple of choice indices, one per slot; index 0 is the user's own choice (the word itself,
or the empty option), so the all-zero point is the user input.

  synonym          each word -> itself or one of its synonyms (positive prompt; the attack's space)
  antonym          a negative prompt from the antonyms of the user's words, each slot may stay empty
  library          a negative prompt from our negative-word library (datasets/negative_words.txt), 4 slots
  antonym+library  both
  sister           a negative prompt from the sister terms of the input's nouns (co-hyponyms in WordNet:
                   sneaker -> sandal, boot), the offline analogue of DPO-Diff's "opposite concepts" that it
                   asks a language model for; one slot per noun-phrase head ("ankle boot" -> boot, "tennis
                   shoe" as one compound, "pair of trousers" -> trousers), each slot may stay empty

``layout()`` describes the token positions of both prompts (fixed text or a slot), which is what the
Gumbel-softmax relaxation mixes: a slot fills one token position, the empty option the pad token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

import numpy as np

from diffsearch.datasets.lexicon import STOP_WORDS, Lexicon, wordnet_head_noun
from diffsearch.errors import UsageError
from diffsearch.registry import Registry

# The spaces by name; ``acts_through_negative_prompt``: its points are negative prompts, so the job refuses a
# pipeline or guidance under which a negative prompt has no effect. The value is the slot kinds it builds.
PROMPT_SPACES: Registry[tuple[str, ...]] = Registry("--space")
PROMPT_SPACES.register(
    "synonym", ("synonym",), "positive prompt: each word of the input -> itself or a synonym (attack, or enhance)"
)
PROMPT_SPACES.register(
    "antonym",
    ("antonym",),
    "negative prompt from antonyms of the input's words; any slot may stay empty",
    acts_through_negative_prompt=True,
)
PROMPT_SPACES.register(
    "library",
    ("library",),
    "negative prompt from our library of ~200 generic negative words, 4 slots",
    acts_through_negative_prompt=True,
)
PROMPT_SPACES.register(
    "antonym+library",
    ("antonym", "library"),
    "antonym slots and library slots in one negative prompt",
    acts_through_negative_prompt=True,
)
PROMPT_SPACES.register(
    "sister",
    ("sister",),
    "negative prompt from sister terms of the input's nouns (WordNet co-hyponyms: sneaker -> "
    "sandal, boot), the offline analogue of DPO-Diff's opposite concepts",
    acts_through_negative_prompt=True,
)
LIBRARY_SLOTS = 4  # the reference splits its library into 4 slots
ARTICLES = frozenset({"a", "an", "the"})  # what follows one is a noun phrase: its last word may be the head


@dataclass
class Slot:
    name: str
    choices: list[str]  # choices[0] is the user's own choice


@dataclass
class PromptSpace:
    name: str
    prompt: str
    slots: list[Slot]
    positive: list[str | int]  # layout: fixed text pieces and slot indices, in order
    negative: list[str | int]
    description: str = field(default="")

    # ---- points -------------------------------------------------------------------------------------
    def user_point(self) -> tuple[int, ...]:
        return (0,) * len(self.slots)

    def sizes(self) -> list[int]:
        return [len(s.choices) for s in self.slots]

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(rng.integers(n)) for n in self.sizes())

    def validate(self, point) -> None:
        if len(point) != len(self.slots) or any(not 0 <= int(i) < n for i, n in zip(point, self.sizes())):
            raise ValueError(f"point {tuple(point)} does not fit slots of sizes {self.sizes()}")

    def to_params(self, point) -> dict[str, str]:
        return {slot.name: slot.choices[i] for slot, i in zip(self.slots, point)}

    def from_params(self, params: dict[str, str]) -> tuple[int, ...]:
        return tuple(slot.choices.index(params[slot.name]) for slot in self.slots)

    def texts(self, point) -> tuple[str, str]:
        """(positive prompt, negative prompt) of a point."""
        self.validate(point)
        positive = "".join(p if isinstance(p, str) else self.slots[p].choices[point[p]] for p in self.positive)
        # negative: the chosen words joined with commas; empty choices vanish
        words = [self.slots[i].choices[point[i]] for i in self.negative if isinstance(i, int)]
        return positive, ", ".join(w for w in words if w)


def split_words(prompt: str) -> list[tuple[str, bool]]:
    """The prompt as pieces: (text, is_word); joining the texts gives the prompt back."""
    pieces, last = [], 0
    for m in re.finditer(r"[A-Za-z][A-Za-z'-]*", prompt):
        if m.start() > last:
            pieces.append((prompt[last : m.start()], False))
        pieces.append((m.group(0), True))
        last = m.end()
    if last < len(prompt):
        pieces.append((prompt[last:], False))
    return pieces


def noun_heads(pieces: list[tuple[str, bool]]) -> dict[int, str]:
    """Noun-phrase heads of a prompt split by ``split_words``: {index of the head's first piece: phrase}.

    A run is consecutive content words joined by spaces only ("dark large sneaker"); its head is found in
    WordNet (``wordnet_head_noun``); a compound head keeps its words ("tennis shoe")."""
    heads: dict[int, str] = {}
    run: list[int] = []
    before = None  # the stop word before the run

    def close(next_word: str | None) -> None:
        if run:
            span = wordnet_head_noun([pieces[i][0] for i in run], next_word, before in ARTICLES)
            if span is not None:
                heads[run[span[0]]] = " ".join(pieces[i][0] for i in run[span[0] : span[1]])
            run.clear()

    for i, (text, is_word) in enumerate(pieces):
        if is_word and text.lower() not in STOP_WORDS:
            run.append(i)
        elif is_word:
            close(text)
            before = text.lower()
        elif text.strip():  # punctuation ends a phrase
            close(None)
            before = None
    close(None)
    return heads


def load_negative_library(is_one_token: Callable[[str], bool] = lambda w: True) -> list[str]:
    text = resources.files("diffsearch.datasets").joinpath("negative_words.txt").read_text()
    words = [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]
    return [w for w in dict.fromkeys(words) if is_one_token(w)]


def build_space(
    name: str,
    prompt: str,
    lexicon: Lexicon,
    is_one_token: Callable[[str], bool],
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> PromptSpace:
    """The space ``name`` around ``prompt``; raises UsageError for an unknown name or a space with no slots."""
    entry = PROMPT_SPACES.lookup(name)
    kinds, description = entry.value, entry.description
    slots: list[Slot] = []
    positive: list[str | int] = []
    negative: list[str | int] = []
    used: set[str] = set()

    def unique(label: str) -> str:  # slot names are Optuna param names: one per slot
        n, candidate = 1, label
        while candidate in used:
            n += 1
            candidate = f"{label}#{n}"
        used.add(candidate)
        return candidate

    def add_negative(slot: Slot) -> None:
        if negative:
            negative.append(",")
        negative.append(len(slots))
        slots.append(slot)

    pieces = split_words(prompt)
    heads = noun_heads(pieces) if "sister" in kinds else {}
    for index, (text, is_word) in enumerate(pieces):
        word_slot = None
        if index in heads:
            sisters = lexicon.lookup("sister", heads[index], prompt)
            if sisters:
                add_negative(Slot(unique(f"sis:{heads[index]}"), [""] + sisters))
        if is_word and text.lower() not in STOP_WORDS:
            if "synonym" in kinds and is_one_token(text):
                subs = [w for w in lexicon.lookup("synonym", text, prompt) if w != text.lower()]
                if subs:
                    word_slot = Slot(unique(f"syn:{text}"), [text] + subs)
            if "antonym" in kinds:
                ants = lexicon.lookup("antonym", text, prompt)
                if ants:
                    add_negative(Slot(unique(f"ant:{text}"), [""] + ants))
        if word_slot is not None:
            positive.append(len(slots))
            slots.append(word_slot)
        else:
            positive.append(text)
    if "library" in kinds:
        library = load_negative_library(is_one_token)
        for i, chunk in enumerate(np.array_split(np.array(library, dtype=object), LIBRARY_SLOTS)):
            add_negative(Slot(unique(f"lib{i + 1}"), [""] + [str(w) for w in chunk]))
    if max_tokens is not None and count_tokens is not None:
        # a slot takes its longest choice's tokens, a comma one more: drop trailing slots that would not fit
        def width(p):
            return count_tokens(p) if isinstance(p, str) else max(1, *(count_tokens(c) for c in slots[p].choices))

        while negative and sum(width(p) for p in negative) > max_tokens:
            negative = negative[:-2] if len(negative) > 1 else []
            slots = slots[: max((p for p in positive + negative if isinstance(p, int)), default=-1) + 1]
    if not slots:
        kind = {"synonym": "synonym", "sister": "sister term (a noun's co-hyponym)"}.get(name, "antonym")
        raise UsageError(
            f"the {name} space of {prompt!r} is empty: no word has a short enough {kind} in the "
            "lexicon; try --space antonym+library, --word-tokens 3 (longer substitutes) or --lexicon llm"
        )
    return PromptSpace(name, prompt, slots, positive, negative, description)
