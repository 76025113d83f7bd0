"""Grouped-query attention without copying the KV cache (fast ``hf`` path, CPU).

transformers' ``sdpa`` attention repeats every key/value head ``num_key_value_groups``
times (``repeat_kv``: a full copy of the cache per layer and per step) unless the mask is
absent, because CUDA's fused kernels do not take a mask together with grouped heads.
PyTorch's CPU kernels do (``scaled_dot_product_attention(..., enable_gqa=True)``) and
give bit-identical results (checked in ``tests/test_backend_attention.py``). On
SmolLM2-135M (9 query / 3 KV heads) a 32-row decoding step at 250 cached tokens spends
about 4.4 ms per layer in copy + attention with ``repeat_kv`` and 0.5 ms with
``enable_gqa`` (2 threads).

:func:`gqa_attention` switches a model whose attention implementation is ``sdpa`` to
:func:`gqa_sdpa_forward` for the duration of a ``with`` block, and only on CPU; any other
model, device or implementation is left as it is. The model's configured implementation
is what the backend records (this changes the kernel, not the numbers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NAME = "bench_sdpa_gqa"
_registered = False


def gqa_sdpa_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' ``sdpa_attention_forward`` with ``enable_gqa=True`` instead of ``repeat_kv``.

    Shapes as in transformers: query ``[B, H, q, D]``, key/value ``[B, H_kv, T, D]``;
    returns ``([B, q, H, D], None)``. Calls with features this does not reproduce
    (position bias, paged cache, attention outputs) go to the stock function.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (query.shape[1] == key.shape[1] or kwargs.get("position_bias") is not None
            or kwargs.get("cache") is not None or kwargs.get("output_attentions", False)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:  # as transformers: prefill of an empty static cache
        key, value = key[:, :, :q_len, :], value[:, :, :q_len, :]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        is_causal=causal, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, gqa_sdpa_forward)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    _registered = True


def _applies(model: Any) -> bool:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if not heads or heads == kv_heads:
        return False
    try:
        return next(model.parameters()).device.type == "cpu"
    except StopIteration:
        return False


@contextmanager
def gqa_attention(model: Any) -> Iterator[bool]:
    """Within the block ``model`` uses :func:`gqa_sdpa_forward`; yields whether it applied."""
    if not _applies(model):
        yield False
        return
    try:
        _register()
    except ImportError:  # pragma: no cover - transformers without the interfaces
        yield False
        return
    config = model.config
    config._attn_implementation = NAME
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"
