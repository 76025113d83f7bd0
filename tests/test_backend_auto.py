"""--backend auto: vLLM only where its start-up pays off."""

from __future__ import annotations

from bench.backends.auto import CPU_MIN_GEN_TOKENS, choose_backend, generation_budget
from bench.items import EvalSet, Item, MetricSpec


def _sets(n_items: int, max_new: int) -> list[EvalSet]:
    items = [Item(str(i), "q", "a") for i in range(n_items)]
    return [EvalSet("forget", items, [MetricSpec("rouge_l"), MetricSpec("probability")], max_new_tokens=max_new),
            EvalSet("lik_only", items, [MetricSpec("probability")], max_new_tokens=max_new)]


def test_generation_budget_counts_generating_sets_only():
    assert generation_budget(_sets(10, 200)) == 2000


def test_choice():
    small, large = _sets(10, 200), _sets(CPU_MIN_GEN_TOKENS // 200, 200)
    assert choose_backend(large, cuda=False, vllm_installed=False)[0] == "hf"
    assert choose_backend(small, cuda=True, vllm_installed=True)[0] == "vllm"
    assert choose_backend(small, cuda=False, vllm_installed=True)[0] == "hf"
    name, why = choose_backend(large, cuda=False, vllm_installed=True)
    assert name == "vllm" and str(CPU_MIN_GEN_TOKENS) in why
