"""How many CPU threads torch uses for a model.

A model under :data:`SMALL_MODEL_PARAMS` parameters runs on one CPU thread, in training
(:func:`bench.training.train`) and in answering (the ``hf`` backend): its matmuls are too
small to split well (the embedded default's first run used 710 s of CPU for 368 s of wall
time on 2 cores), and on a busy machine two OpenMP threads that spin while another process
holds a core made it far slower — measured on 2 cores with one other busy process: a tiny
training step 16x slower (batch 8: 2040 ms vs 126 ms), and a tiny model's TOFU evaluation
(5,553 requests) 27x slower (362 s vs 13.3 s). Larger models and GPUs keep torch's setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

SMALL_MODEL_PARAMS = 20_000_000


def is_small_cpu_model(module: Any) -> bool:
    """Whether ``module`` has fewer than :data:`SMALL_MODEL_PARAMS` parameters, all on CPU."""
    params = list(module.parameters())
    return bool(params) and all(p.device.type == "cpu" for p in params) and \
        sum(p.numel() for p in params) < SMALL_MODEL_PARAMS


@contextlib.contextmanager
def model_threads(module: Any) -> Iterator[None]:
    """One torch CPU thread inside the block for a small CPU model (module docstring);
    torch's thread count is restored after it."""
    import torch

    before = torch.get_num_threads()
    if is_small_cpu_model(module):
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
