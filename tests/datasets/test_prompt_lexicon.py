"""WordNet offline and the OpenAI-compatible chat provider (against a local stub server)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from diffsearch.datasets.lexicon import Lexicon, wordnet_antonyms, wordnet_synonyms
from diffsearch.errors import UsageError


@pytest.mark.parametrize(
    "word,antonym",
    [("happy", "unhappy"), ("old", "young"), ("tall", "short"), ("hot", "cold"), ("good", "bad"), ("dark", "light")],
)
def test_wordnet_antonyms(word, antonym):
    assert antonym in wordnet_antonyms(word)


@pytest.mark.parametrize(
    "word,synonym",
    [("big", "large"), ("happy", "glad"), ("car", "automobile"), ("quick", "fast"), ("picture", "image")],
)
def test_wordnet_synonyms(word, synonym):
    found = wordnet_synonyms(word)
    assert synonym in found and word not in found


def test_lexicon_caches_and_keeps_one_token_words(tmp_path):
    cache = tmp_path / "lex.json"
    lexicon = Lexicon("wordnet", lambda w: " " not in w and len(w) <= 6, cache)
    found = lexicon.lookup("antonym", "old", "an old man")
    assert found and all(" " not in w and len(w) <= 6 for w in found) and len(found) <= 5
    assert "antonym|old" in json.loads(cache.read_text())


class _Stub(BaseHTTPRequestHandler):
    calls = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.calls.append((self.path, body))
        word = body["messages"][0]["content"].split('"')[1]
        answer = {"gardener": 'Sure! ```["landscaper", "planter", "tree surgeon"]```'}.get(word, "[]")
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_llm_provider_against_a_stub_server(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        lexicon = Lexicon("llm", lambda w: " " not in w, tmp_path / "llm.json", url, "stub-model")
        sentence = "a dedicated gardener tending a bonsai"
        assert lexicon.lookup("synonym", "gardener", sentence) == ["landscaper", "planter"]
        path, body = _Stub.calls[-1]
        assert path == "/v1/chat/completions" and body["model"] == "stub-model"
        assert "synonyms" in body["messages"][0]["content"] and sentence in body["messages"][0]["content"]
        calls = len(_Stub.calls)
        again = Lexicon("llm", lambda w: True, tmp_path / "llm.json", url, "stub-model")
        assert again.lookup("synonym", "gardener", sentence) == ["landscaper", "planter", "tree surgeon"]
        assert len(_Stub.calls) == calls  # answered from the JSON cache
    finally:
        server.shutdown()
    with pytest.raises(UsageError, match="llm-url"):
        Lexicon("llm", lambda w: True, tmp_path / "x.json", "http://127.0.0.1:9/v1", "m").lookup("antonym", "old", "x")
    with pytest.raises(UsageError, match="needs --llm-url"):
        Lexicon("llm")
