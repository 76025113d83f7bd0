"""The dedupe + request-cache layer: keys, dedupe counts, persistence, crash safety."""

from __future__ import annotations

import sqlite3

import pytest

from bench.backends.base import Backend
from bench.backends.cache import DB_NAME, AnsweringLayer, cache_key
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
    TokenStats,
    TokenStatsResponse,
)

FP = "f" * 64
SETTINGS = {"backend": "fake", "dtype": "float32"}


class FakeBackend(Backend):
    """Deterministic answers from the request text; records every call."""

    name = "fake"

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[list] = []
        self.fail_on_call = fail_on_call
        self.closed = 0

    def settings(self):
        return dict(SETTINGS)

    def answer(self, requests):
        self.calls.append(list(requests))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise RuntimeError("backend crashed")
        out = []
        for r in requests:
            if isinstance(r, Generate):
                out.append(GenerateResponse(r.prompt.upper()[: r.max_new_tokens], r.max_new_tokens, "length"))
            elif isinstance(r, TokenStats):
                n = float(len(r.continuation))
                out.append(TokenStatsResponse((-n, -0.5), (True, False), (-1.0, -2.0), (0.25, 0.5), (1.0, 2.0)))
            else:
                out.append(LogLikelihoodResponse((-float(len(r.prompt)), -0.1 / 3), (False, True)))
        return out

    def close(self):
        self.closed += 1


def _reqs():
    return [
        LogLikelihood("p1", " a"), LogLikelihood("p1", " bb"), TokenStats("p1", " a"),
        Generate("p2", 5), Generate("p2", 5, ("\n",)), LogLikelihood("p1", " a"),
        Generate("p2", 5), LogLikelihood("p3", " a"),
    ]


# --------------------------------------------------------------------------- keys


def test_cache_key_is_stable_hex():
    k = cache_key(FP, SETTINGS, LogLikelihood("p", "c"))
    assert k == cache_key(FP, dict(reversed(list(SETTINGS.items()))), LogLikelihood("p", "c"))
    assert len(k) == 64 and int(k, 16) >= 0


@pytest.mark.parametrize("other", [
    (FP[:-1] + "0", SETTINGS, LogLikelihood("p", "c")),  # model fingerprint
    (FP, {**SETTINGS, "dtype": "bfloat16"}, LogLikelihood("p", "c")),  # decoding setting
    (FP, {**SETTINGS, "extra": 1}, LogLikelihood("p", "c")),
    (FP, SETTINGS, LogLikelihood("p ", "c")),  # prompt
    (FP, SETTINGS, LogLikelihood("p", "c ")),  # continuation
    (FP, SETTINGS, LogLikelihood("pc", "")),  # same concatenation, other split
    (FP, SETTINGS, TokenStats("p", "c")),  # kind
])
def test_cache_key_changes(other):
    assert cache_key(*other) != cache_key(FP, SETTINGS, LogLikelihood("p", "c"))


def test_cache_key_generate_fields():
    base = cache_key(FP, SETTINGS, Generate("p", 10))
    assert cache_key(FP, SETTINGS, Generate("p", 11)) != base
    assert cache_key(FP, SETTINGS, Generate("p", 10, ("\n",))) != base
    assert cache_key(FP, SETTINGS, Generate("p", 10, ("a", "b"))) != cache_key(FP, SETTINGS, Generate("p", 10, ("b", "a")))
    assert cache_key(FP, SETTINGS, Generate("p", 10)) == base


# --------------------------------------------------------------------------- layer


def test_dedupe_order_and_counts_without_cache():
    be = FakeBackend()
    layer = AnsweringLayer(be, FP, None)
    reqs = _reqs()
    got = layer.answer(reqs)
    assert got == FakeBackend().answer(reqs)  # order kept, one per request
    assert len(be.calls) == 1 and len(be.calls[0]) == 6  # 2 duplicates removed
    assert sorted(map(repr, be.calls[0])) == sorted(map(repr, set(reqs)))
    assert layer.stats() == {
        "generate": {"requests": 3, "duplicates": 1, "hits": 0, "misses": 2, "computed": 2},
        "loglikelihood": {"requests": 4, "duplicates": 1, "hits": 0, "misses": 3, "computed": 3},
        "token_stats": {"requests": 1, "duplicates": 0, "hits": 0, "misses": 1, "computed": 1},
    }
    layer.answer(reqs)  # no persistent cache: computed again
    assert len(be.calls) == 2 and layer.stats()["loglikelihood"]["computed"] == 6


def test_second_call_hits_everything(tmp_path):
    be = FakeBackend()
    layer = AnsweringLayer(be, FP, tmp_path)
    first = layer.answer(_reqs())
    second = layer.answer(_reqs())
    assert first == second and len(be.calls) == 1
    s = layer.stats()
    assert s["loglikelihood"]["hits"] == 3 and s["generate"]["hits"] == 2 and s["token_stats"]["hits"] == 1
    assert sum(v["computed"] for v in s.values()) == 6
    # a new process (new layer) reads the same store
    be2 = FakeBackend()
    third = AnsweringLayer(be2, FP, tmp_path).answer(_reqs())
    assert third == first and be2.calls == []
    assert isinstance(third[2], TokenStatsResponse) and third[1].token_logprobs[1] == -0.1 / 3


def test_fingerprint_or_settings_change_misses(tmp_path):
    AnsweringLayer(FakeBackend(), FP, tmp_path).answer(_reqs())
    be = FakeBackend()
    AnsweringLayer(be, "0" * 64, tmp_path).answer(_reqs())
    assert len(be.calls) == 1 and len(be.calls[0]) == 6


def test_backend_cache_settings_hook_is_used(tmp_path):
    class Sched(FakeBackend):
        def __init__(self, batch):
            super().__init__()
            self.batch = batch

        def settings(self):
            return {**SETTINGS, "batch_size": self.batch}

        def cache_settings(self):
            return dict(SETTINGS)

    AnsweringLayer(Sched(8), FP, tmp_path).answer(_reqs())
    be = Sched(32)  # scheduling knob changed: still hits
    AnsweringLayer(be, FP, tmp_path).answer(_reqs())
    assert be.calls == []


def test_crash_keeps_finished_chunks(tmp_path):
    reqs = [LogLikelihood(f"p{i}", " x") for i in range(6)]
    be = FakeBackend(fail_on_call=2)
    layer = AnsweringLayer(be, FP, tmp_path, chunk_size=2)
    with pytest.raises(RuntimeError, match="crashed"):
        layer.answer(reqs)
    be2 = FakeBackend()
    layer2 = AnsweringLayer(be2, FP, tmp_path, chunk_size=2)
    assert layer2.answer(reqs) == FakeBackend().answer(reqs)
    assert layer2.stats()["loglikelihood"]["hits"] == 2 and sum(len(c) for c in be2.calls) == 4


def test_chunks_keep_a_prompt_together(tmp_path):
    reqs = [LogLikelihood("b", " 1"), LogLikelihood("a", " 1"), LogLikelihood("b", " 2"), LogLikelihood("a", " 2")]
    be = FakeBackend()
    AnsweringLayer(be, FP, None, chunk_size=2).answer(reqs)
    assert [{r.prompt for r in c} for c in be.calls] == [{"a"}, {"b"}]


def test_unreadable_row_is_recomputed(tmp_path):
    AnsweringLayer(FakeBackend(), FP, tmp_path).answer([LogLikelihood("p", " c")])
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE responses SET value = '{\"t\": \"ll\"}'")
    be = FakeBackend()
    layer = AnsweringLayer(be, FP, tmp_path)
    assert layer.answer([LogLikelihood("p", " c")]) == FakeBackend().answer([LogLikelihood("p", " c")])
    assert len(be.calls) == 1 and layer.stats()["loglikelihood"]["misses"] == 1
    assert AnsweringLayer(FakeBackend(), FP, tmp_path).answer([LogLikelihood("p", " c")])[0].token_logprobs[0] == -1.0


def test_wrong_response_count_is_an_error():
    from bench.errors import BenchError

    class Short(FakeBackend):
        def answer(self, requests):
            return super().answer(requests)[:-1]

    with pytest.raises(BenchError, match="returned 1 responses for 2"):
        AnsweringLayer(Short(), FP, None).answer([LogLikelihood("a", "b"), LogLikelihood("a", "c")])


def test_close_is_idempotent(tmp_path):
    be = FakeBackend()
    layer = AnsweringLayer(be, FP, tmp_path)
    layer.close()
    layer.close()
    assert be.closed == 2  # the backend's own close() is safe to call twice


def test_with_hf_backend(tiny_bundle, tmp_path):
    """Real backend: the second answer() is all hits and equal; keys follow dtype."""
    from bench.backends.hf import HFBackend

    reqs = [LogLikelihood("<s>Q", " The book"), TokenStats("<s>Q", " The book"),
            Generate("<s>Question:", 4), LogLikelihood("<s>Q", " The book")]
    be = HFBackend(tiny_bundle, mode="naive")
    fp = tiny_bundle.fingerprint()
    layer = AnsweringLayer(be, fp, tmp_path)
    first = layer.answer(reqs)
    assert layer.answer(reqs) == first
    assert layer.stats()["loglikelihood"] == {"requests": 4, "duplicates": 2, "hits": 1, "misses": 1, "computed": 1}
    # mode is not part of the key: the fast backend hits the naive answers
    fast = AnsweringLayer(HFBackend(tiny_bundle, mode="fast"), fp, tmp_path)
    assert fast.answer(reqs) == first and fast.stats()["generate"]["hits"] == 1
