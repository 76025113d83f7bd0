"""Smoke and golden tests of the speed benchmark's functions (benchmarks/eval_speed.py).

A tiny random Llama on the synthetic task, ``--limit``-style cuts of 1-2 items per set:
seconds. No shared data, no SmolLM2, no vllm.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.requests import (
    Generate,
    GenerateResponse,
    LogLikelihood,
    LogLikelihoodResponse,
)
from bench.task import SetResult

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "eval_speed.py"


@pytest.fixture(scope="module")
def es():
    spec = importlib.util.spec_from_file_location("eval_speed", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["eval_speed"] = mod  # dataclasses look their module up while being built
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("eval_speed", None)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy shared CPU, two spinning OpenMP threads run ~50x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sets():
    from bench.registry import TASKS

    return TASKS.get("synthetic-forget01")().load(None, limit=2).eval_sets


class FakeBackend:
    """Records its calls; LL → one log-prob per continuation character, Generate → 3 tokens."""

    name = "fake"

    def __init__(self):
        self.calls = []
        self.closed = False

    def answer(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            if isinstance(r, Generate):
                out.append(GenerateResponse(f"gen:{r.prompt}", 3, "length"))
            else:
                out.append(LogLikelihoodResponse(tuple(-1.0 for _ in r.continuation),
                                                 tuple(True for _ in r.continuation)))
        return out

    def settings(self):
        return {"backend": "fake", "mode": "x"}

    def cache_settings(self):
        return {"backend": "fake"}

    def engines(self):
        return {"generate": "fake"}

    def close(self):
        self.closed = True


# --------------------------------------------------------------------------- timing wrappers


def test_timed_backend_splits_phases_and_counts_tokens(es, tiny_bundle):
    from bench.model_bundle import tokenize_pair

    tok = tiny_bundle.tokenizer
    reqs = [LogLikelihood("Question: Who wrote the book?\n", "Answer: Basil."),
            Generate("Question: Where?\n", 5),
            LogLikelihood("The quick", " brown fox"),
            Generate("Question: What?\n", 5)]
    fake = FakeBackend()
    timed = es.TimedBackend(fake, tok)
    out = timed.answer(reqs, label="forget/x")
    # two backend calls: the likelihood requests, then the Generate ones, order kept
    assert fake.calls == [[reqs[0], reqs[2]], [reqs[1], reqs[3]]]
    assert out[1] == GenerateResponse("gen:Question: Where?\n", 3, "length")
    assert out[0].num_tokens == len("Answer: Basil.")
    assert [(p.label, p.phase, p.requests) for p in timed.passes] == [
        ("forget/x", "likelihood", 2), ("forget/x", "generation", 2)]
    assert timed.passes[1].tokens == 6  # 3 generated tokens per Generate
    assert timed.passes[0].tokens == 0  # counted later, untimed
    timed.count_tokens()
    want = sum(len(a) + len(b) for a, b in (tokenize_pair(tok, r.prompt, r.continuation)
                                            for r in (reqs[0], reqs[2])))
    assert timed.passes[0].tokens == want > 0
    ph = timed.phases()
    assert ph["likelihood"]["requests"] == 2 and ph["generation"]["tokens"] == 6
    assert ph["likelihood"]["calls"] == 1 and ph["likelihood"]["tokens"] == want
    # the contract passes through; cache_settings is the wrapped backend's
    assert timed.cache_settings() == {"backend": "fake"} and timed.settings()["mode"] == "x"
    timed.close()
    assert fake.closed


def test_timed_backend_behind_answering_layer_dedupes(es, tiny_bundle):
    from bench.backends.cache import AnsweringLayer

    fake = FakeBackend()
    timed = es.TimedBackend(fake, tiny_bundle.tokenizer)
    layer = AnsweringLayer(timed, "fp", None)
    r = LogLikelihood("p", " c")
    g = Generate("p", 4)
    out = layer.answer([r, g, r, r, g])
    assert out[0] == out[2] == out[3] and out[1] == out[4]
    assert sum(len(c) for c in fake.calls) == 2  # identical requests reach the backend once
    assert layer.key_settings == {"backend": "fake"}


def test_plan_requests_and_per_metric_layer(es, tiny_bundle, sets):
    requests, labels = es.plan_requests(tiny_bundle, sets)
    passes = list(dict.fromkeys(labels))
    # TOFU metrics: forget 5, retain / real authors / world facts 3 each, in set order
    assert passes == [
        "forget/probability", "forget/rouge_l", "forget/truth_ratio", "forget/extraction_strength",
        "forget/exact_memorization", "retain/probability", "retain/rouge_l", "retain/truth_ratio",
        "real_authors/probability", "real_authors/rouge_l", "real_authors/truth_ratio",
        "world_facts/probability", "world_facts/rouge_l", "world_facts/truth_ratio"]
    fake = FakeBackend()
    layer = es.PerMetricLayer(es.TimedBackend(fake, tiny_bundle.tokenizer), requests, labels)
    out = layer.answer(requests)
    assert len(out) == len(requests) and all(o is not None for o in out)
    # one backend call per pass, each holding exactly that pass's requests in dataset order,
    # duplicates across metrics included (probability and ES/EM ask the same likelihood)
    assert len(fake.calls) == len(passes)
    for call, label in zip(fake.calls, passes):
        assert call == [q for q, lab in zip(requests, labels) if lab == label]
    assert sum(len(c) for c in fake.calls) == len(requests) > len(set(requests))
    assert layer.stats() == {"requests": len(requests), "passes": len(passes)}
    with pytest.raises(BenchError, match="other requests"):
        layer.answer(requests[:-1])
    with pytest.raises(BenchError, match="labels"):
        es.PerMetricLayer(es.TimedBackend(fake, None), requests, labels[:-1])


# --------------------------------------------------------------------------- agreement


def _result(es, name, values, gens, rouge=(0.5, 0.5)):
    sr = SetResult("forget", ["forget/0", "forget/1", "forget/2"],
                   aggregates={"probability": 0.4, "rouge_l": sum(rouge[:2]) / 2},
                   per_item={"probability": list(values), "rouge_l": [rouge[0], rouge[1], 0.0]})
    samples = [{"set": "forget", "id": f"forget/{i}", "generation": g} for i, g in enumerate(gens)]
    return es.PathResult(name, 0.0, 1.0, 2.0, {}, [], {}, {"forget": sr}, samples, {}, {})


def test_compare_golden(es):
    ref = _result(es, "naive", [0.5, None, 1.0], ["a", "b", "c"])
    other = _result(es, "fast", [0.75, None, float("nan")], ["a", "x", "c"], rouge=(0.5, 0.9))
    other.sets["forget"].aggregates["probability"] = 0.45
    c = es.compare(ref, other)
    m = c["metrics"]["forget/probability"]
    assert m["max_abs_diff"] == 0.25 and m["one_sided"] == 1 and m["items"] == 3
    assert m["max_rel_diff"] == pytest.approx(0.25 / 0.75)  # |0.5 - 0.75| / 0.75
    assert c["metrics"]["forget/rouge_l"]["max_rel_diff"] == pytest.approx(0.4 / 0.9)
    assert m["aggregate_delta"] == pytest.approx(0.05)
    assert c["metrics"]["forget/rouge_l"]["max_abs_diff"] == pytest.approx(0.4)
    assert c["identical_generations"] == {"forget": pytest.approx(2 / 3), "all": pytest.approx(2 / 3)}
    assert c["rouge_l_delta"]["forget"] == pytest.approx(0.2)
    same = es.compare(ref, ref)
    assert all(v["max_abs_diff"] == 0.0 == v["max_rel_diff"] for v in same["metrics"].values())
    # equal infinities are no difference
    inf = _result(es, "x", [math.inf, None, 1.0], ["a", "b", "c"])
    assert es.compare(inf, inf)["metrics"]["forget/probability"]["max_abs_diff"] == 0.0
    moved = _result(es, "y", [0.5, None, 1.0], ["a", "b", "c"])
    moved.sets["forget"].item_ids[0] = "forget/9"
    with pytest.raises(BenchError, match="other items"):
        es.compare(ref, moved)


def test_speedups_golden(es):
    def res(name, startup, ll, gen, evaluate):
        phases = {"likelihood": {"seconds": ll}, "generation": {"seconds": gen}}
        return es.PathResult(name, 0.0, startup, evaluate, phases, [], {}, {}, [], {}, {})

    naive, fast = res("naive", 0.0, 6.0, 10.0, 20.0), res("fast", 1.0, 2.0, 4.0, 9.0)
    ups = es.speedups([naive, fast], naive)
    assert ups["naive"] == {"total": 1.0, "likelihood": 1.0, "generation": 1.0}
    assert ups["fast"] == {"total": 2.0, "likelihood": 3.0, "generation": 2.5}
    assert fast.total_s == 10.0 and fast.other_s == 3.0
    assert es.speedups([res("z", 0, 0.0, 0.0, 0.0)], naive)["z"]["likelihood"] is None


# --------------------------------------------------------------------------- models, options


def test_parse_overrides(es):
    assert es.parse_overrides("hidden_size=64, num_hidden_layers=2,rms_norm_eps=1e-6,tie_word_embeddings=false") == {
        "hidden_size": 64, "num_hidden_layers": 2, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}
    assert es.parse_overrides("") == {}
    with pytest.raises(BenchError, match="key=value"):
        es.parse_overrides("hidden_size")


def test_build_random_llama(es, tiny_bundle):
    tok = tiny_bundle.tokenizer
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2}
    m = es.build_random_llama(tok, small, seed=1)
    assert m.config.vocab_size == len(tok) and m.config.num_hidden_layers == 2
    assert m.config.eos_token_id == tok.eos_token_id and m.config.num_key_value_heads == 2
    assert m.config.intermediate_size == 128 and not m.training
    m2 = es.build_random_llama(tok, small, seed=1)
    assert all((a == b).all() for a, b in zip(m.parameters(), m2.parameters()))  # seeded
    # the default is a 1B-class shape (Llama-3.2-1B's, minus its vocabulary)
    assert es.RANDOM_LLAMA["hidden_size"] == 2048 and es.RANDOM_LLAMA["num_hidden_layers"] == 16
    with pytest.raises(BenchError, match="unknown Llama config field.*no_such_field_xyz"):
        es.build_random_llama(tok, {"no_such_field_xyz": 1})
    with pytest.raises(BenchError, match="bad Llama config"):
        es.build_random_llama(tok, {"hidden_size": "big"})


def test_parse_args(es):
    a = es.parse_args(["--paths", "fast,naive"])
    assert a.paths == ["naive", "fast"] and a.task == "tofu-forget01" and a.device == "cpu"
    assert es.parse_args([]).paths == ["naive", "fast", "fast-bf16", "vllm-gen", "vllm"]
    assert es.parse_args(["--paths", "fast,naive-bs8,naive"]).paths == ["naive", "naive-bs8", "fast"]
    assert es.parse_args(["--config-model"]).task == "tofu-forget10"
    assert es.parse_args(["--config-model", "--task", "tofu-forget01"]).task == "tofu-forget01"
    with pytest.raises(SystemExit):
        es.parse_args(["--paths", "naive,turbo"])


# --------------------------------------------------------------------------- end to end


def test_naive_and_fast_paths_agree(es, tiny_bundle, sets):
    make = lambda: copy.deepcopy(tiny_bundle)  # noqa: E731 (backends cast the module in place)
    naive = es.run_path("naive", make, sets, progress=False)
    fast = es.run_path("fast", make, sets, progress=False, warmup=False)
    requests, labels = es.plan_requests(tiny_bundle, sets)
    n_gen = sum(isinstance(r, Generate) for r in requests)
    # naive: one pass per metric, nothing deduped; fast: one call per phase, deduped
    assert naive.phases["likelihood"]["requests"] == len(requests) - n_gen
    assert naive.phases["likelihood"]["calls"] == 10 and naive.phases["generation"]["calls"] == 4
    assert fast.phases["likelihood"]["calls"] == 1 and fast.phases["generation"]["calls"] == 1
    distinct_ll = len({r for r in requests if not isinstance(r, Generate)})
    assert fast.phases["likelihood"]["requests"] == distinct_ll < naive.phases["likelihood"]["requests"]
    assert fast.phases["likelihood"]["tokens"] < naive.phases["likelihood"]["tokens"]
    # same generations (greedy, fp32) → same generated-token count
    assert naive.phases["generation"]["tokens"] == fast.phases["generation"]["tokens"] > 0
    for r in (naive, fast):
        assert r.evaluate_s >= sum(p["seconds"] for p in r.phases.values()) > 0
        assert r.memory["rss_peak"] >= r.memory["rss_start"] > 0 and r.memory["cuda_peak"] is None
    assert naive.extra["warmup_s"] > 0 and fast.extra["warmup_s"] == 0.0
    c = es.compare(naive, fast)
    assert c["identical_generations"]["all"] == 1.0
    assert len(c["metrics"]) == 14
    for key, m in c["metrics"].items():
        assert m["max_abs_diff"] < 1e-5 and m["one_sided"] == 0, key
    assert "forget" in es.format_path(naive) and "passes" in es.format_path(naive)
    report = es.format_report([naive, fast], [c], es.speedups([naive, fast], naive), "naive",
                              {"vllm": "not installed, skipped"})
    assert "fast vs naive" in report and "vllm: not installed, skipped" in report
    json.dumps(fast.to_dict(), default=str)


def test_main_writes_json_and_skips_vllm(es, tiny_bundle, tmp_path, monkeypatch, capsys):
    from bench.models import save_bundle

    save_bundle(tiny_bundle, tmp_path / "model")
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "speed.json"
    rc = es.main(["--task", "synthetic-forget01", "--limit", "1", "--model", str(tmp_path / "model"),
                  "--paths", "naive,fast,vllm-gen,vllm", "--no-progress", "--no-warmup", "--threads", "1",
                  "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "vllm-gen, vllm: vllm not installed, skipped" in text and "speed-up vs naive" in text
    fig = json.loads(out.read_text())
    assert set(fig["paths"]) == {"naive", "fast"}
    assert fig["skipped"] == {"vllm-gen": "vllm not installed, skipped", "vllm": "vllm not installed, skipped"}
    assert fig["items"] == {"forget": 1, "retain": 1, "real_authors": 1, "world_facts": 1}
    assert fig["speedups"]["naive"]["total"] == 1.0
    assert fig["comparisons"][0]["path"] == "fast" and fig["comparisons"][0]["reference"] == "naive"
    assert fig["paths"]["fast"]["phases"]["generation"]["tokens"] > 0
    # a bad option is one clear line, not a traceback
    assert es.main(["--task", "synthetic-forget01", "--model", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_make_backend_paths(es, tiny_bundle):
    import copy

    from bench.model_bundle import ModelBundle

    def fresh():
        return ModelBundle(copy.deepcopy(tiny_bundle.module), tiny_bundle.tokenizer, tiny_bundle.prompt)

    naive = es.make_backend("naive", fresh(), device="cpu", batch_size=32, token_budget=None)
    bs8 = es.make_backend("naive-bs8", fresh(), device="cpu", batch_size=32, token_budget=None)
    fast = es.make_backend("fast", fresh(), device="cpu", batch_size=32, token_budget=None, slots=16)
    assert (naive.mode, naive.batch_size) == ("naive", 32) and (bs8.mode, bs8.batch_size) == ("naive", 8)
    assert (fast.mode, fast.slots, fast.token_budget) == ("fast", 16, 2048)
    with pytest.raises(BenchError, match="unknown path"):
        es.make_backend("turbo", fresh(), device="cpu", batch_size=32, token_budget=None)
