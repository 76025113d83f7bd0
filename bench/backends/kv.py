"""Small surgery on transformers' ``DynamicCache`` (transformers ≥ 4.56, checked on 5.19).

The fast paths reuse a model's KV cache outside ``generate``: select/repeat batch rows
(prefix sharing), left-pad to a common length and concatenate (continuous batching), drop
leading columns no row attends to. Only caches whose layers store ``keys``/``values`` as
``[batch, heads, seq, head_dim]`` tensors are supported: full-attention ``DynamicLayer``
and sliding-window layers that have not yet cropped anything (all sequences shorter than
the window). :func:`supported` says whether a cache qualifies; callers fall back to the
plain path otherwise.
"""

from __future__ import annotations

import copy
from typing import Any


def _layer_types() -> tuple[type, type | None]:
    from transformers.cache_utils import DynamicLayer

    try:
        from transformers.cache_utils import DynamicSlidingWindowLayer
    except ImportError:  # pragma: no cover - older transformers
        DynamicSlidingWindowLayer = None  # noqa: N806
    return DynamicLayer, DynamicSlidingWindowLayer


def supported(cache: Any, max_len: int) -> bool:
    """True when ``cache`` can be edited here for sequences of up to ``max_len`` columns."""
    layers = getattr(cache, "layers", None)
    if not layers:
        return False
    full, sliding = _layer_types()
    for layer in layers:
        if type(layer) is full:
            continue
        if sliding is not None and type(layer) is sliding:
            if max_len >= layer.sliding_window - 1:
                return False
            continue
        return False
    return all(getattr(layer, "keys", None) is not None for layer in layers)


def _rebuild(cache: Any, fn) -> Any:
    """A shallow copy of ``cache`` whose layers hold ``fn(keys)`` / ``fn(values)``."""
    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        lay = copy.copy(layer)
        lay.keys = fn(layer.keys)
        lay.values = fn(layer.values)
        if hasattr(lay, "cumulative_length"):  # sliding layer that never cropped
            lay.cumulative_length = lay.keys.shape[-2]
        new.layers.append(lay)
    return new


def select_rows(cache: Any, index: Any) -> Any:
    """A new cache holding rows ``index`` (a LongTensor; rows may repeat) of ``cache``."""
    return _rebuild(cache, lambda t: t.index_select(0, index.to(t.device)))


def drop_leading(cache: Any, n: int) -> Any:
    """A new cache without its first ``n`` sequence columns."""
    if n <= 0:
        return cache
    return _rebuild(cache, lambda t: t[:, :, n:, :].contiguous())


def left_pad(cache: Any, n: int) -> Any:
    """A new cache with ``n`` zero columns prepended (they must be masked by the caller)."""
    if n <= 0:
        return cache
    import torch

    def pad(t):
        z = t.new_zeros(t.shape[0], t.shape[1], n, t.shape[3])
        return torch.cat([z, t], dim=2)

    return _rebuild(cache, pad)


def concat_rows(a: Any, b: Any) -> Any:
    """Rows of ``a`` then rows of ``b`` (equal sequence lengths, same layer structure)."""
    import torch

    new = copy.copy(a)
    new.layers = []
    for la, lb in zip(a.layers, b.layers, strict=True):
        lay = copy.copy(la)
        lay.keys = torch.cat([la.keys, lb.keys], dim=0)
        lay.values = torch.cat([la.values, lb.values], dim=0)
        if hasattr(lay, "cumulative_length"):
            lay.cumulative_length = lay.keys.shape[-2]
        new.layers.append(lay)
    return new


def seq_len(cache: Any) -> int:
    """Number of cached sequence columns."""
    return int(cache.layers[0].keys.shape[-2])


def bytes_per_token(model: Any) -> int:
    """KV-cache bytes one sequence position takes in ``model`` (all layers, keys + values);
    0 when the config does not say (then no memory cap can be derived)."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    try:
        layers = int(cfg.num_hidden_layers)
        heads = int(cfg.num_attention_heads)
        kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
        elem = next(model.parameters()).element_size()
    except (AttributeError, TypeError, ValueError, StopIteration):
        return 0
    return layers * 2 * kv_heads * head_dim * elem
