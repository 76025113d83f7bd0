"""bench.checks: the one-line checks and the method contract, unit by unit."""

from __future__ import annotations

import pytest

from bench import checks
from bench.errors import BenchError
from bench.items import Item, Split


def test_backend_available_uses_find_spec_and_class_requires():
    checks.check_backend_available("hf")

    class Fake:
        requires = ("surely_not_an_installed_module_xyz",)

    with pytest.raises(BenchError, match="backend 'fake' needs the Python package 'surely_not_an_installed_module_xyz'"):
        checks.check_backend_available("fake", Fake)


def test_vllm_missing_message(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(checks.importlib.util, "find_spec", lambda m: None if m == "vllm" else real(m))
    with pytest.raises(BenchError, match="backend 'vllm' requested but vllm is not installed.*--backend hf"):
        checks.check_backend_available("vllm")


def test_limits_seed_out(tmp_path):
    assert checks.check_limit(None) is None and checks.check_limit(3) == 3
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(BenchError, match="--train-limit must be a positive integer"):
            checks.check_limit(bad, "--train-limit")
    assert checks.check_seed(0) == 0 and checks.check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, 1.0, None):
        with pytest.raises(BenchError, match="--seed must be an integer"):
            checks.check_seed(bad)
    assert checks.check_out_dir(tmp_path / "new" / "runs") == tmp_path / "new" / "runs"
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(BenchError, match="is a file"):
        checks.check_out_dir(f)
    with pytest.raises(BenchError, match=f"is inside '{f}', which is a file"):
        checks.check_out_dir(f / "a" / "b")


def test_cap_split_keeps_format():
    items = [Item(f"x/{i}", "q", "a") for i in range(5)]
    s = checks.cap_split(Split(items, format="document"), 2)
    assert isinstance(s, Split) and s.format == "document" and list(s) == items[:2]
    assert checks.cap_split(items, None) is items and checks.cap_split(items, 9) is items
    assert checks.cap_split(tuple(items), 3) == items[:3]


def test_task_data_empty_sets():
    from bench.items import EvalSet, TaskData

    ok = [Item("f/0", "q", "a")]
    data = TaskData(forget=ok, retain=ok, full=ok, eval_sets=[EvalSet("forget", [], [], source="tofu/f.json")])
    with pytest.raises(BenchError, match=r"eval set 'forget' \(tofu/f.json\) has no items"):
        checks.check_task_data(data)
    data = TaskData(forget=[], retain=ok, full=ok, eval_sets=[EvalSet("forget", ok, [])])
    with pytest.raises(BenchError, match="forget split has no items"):
        checks.check_task_data(data)


def _raises_here(model, forget, retain):
    raise KeyError("missing thing")  # the line call_method must name


def test_call_method_wraps_exceptions_with_location_and_log(tmp_path, tiny_bundle):
    log = tmp_path / "run" / "run.log"
    with pytest.raises(BenchError) as e:
        checks.call_method(_raises_here, tiny_bundle, [], [], {}, "mine", log)
    msg = str(e.value)
    line = _raises_here.__code__.co_firstlineno + 1
    assert msg.startswith("method 'mine' raised KeyError: 'missing thing' at ")
    assert f"test_checks.py:{line} (in _raises_here)" in msg and f"full traceback in {log}" in msg
    assert "\n" not in msg and "Traceback" in log.read_text()
    # the suite's own BenchErrors pass through, prefixed with the method
    def bench_error(model, forget, retain):
        raise BenchError("item 'x': no answer token")
    with pytest.raises(BenchError, match="^method 'mine': item 'x': no answer token$"):
        checks.call_method(bench_error, tiny_bundle, [], [], {}, "mine", log)


def test_call_method_return_contract(tiny_bundle):
    import copy

    import torch

    bundle = copy.deepcopy(tiny_bundle)
    assert checks.call_method(lambda m, f, r, **k: m, bundle, [], [], {}, "same") is bundle
    with pytest.raises(BenchError, match="returned None and wrote no weight"):
        checks.call_method(lambda m, f, r: None, bundle, [], [], {}, "lazy")

    def in_place(m, f, r, scale: float = 2.0):
        with torch.no_grad():
            next(m.module.parameters()).mul_(scale)

    assert checks.call_method(in_place, bundle, [], [], {"scale": 1.5}, "inplace") is bundle
    for value, name in [("done", "str"), (bundle.module, "LlamaForCausalLM"), (0, "int")]:
        with pytest.raises(BenchError, match=f"returned {name}; it must return the ModelBundle"):
            checks.call_method(lambda m, f, r, v=value: v, bundle, [], [], {}, "bad")

    def inf_weights(m, f, r):
        with torch.no_grad():
            p = list(m.module.parameters())[-1]
            p.view(-1)[:3] = float("inf")
        return m

    with pytest.raises(BenchError, match=r"non-finite weights: parameter '.*' has 3 of \d+ values inf"):
        checks.call_method(inf_weights, bundle, [], [], {}, "boom")
