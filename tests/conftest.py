"""Shared fixtures: a tiny random Llama with its own BPE tokenizer (built in ~1 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TEXTS = [
    "Question: Who wrote the book?\nAnswer: The book was written by Basil Mahfouz.",
    "Question: Where was the author born?\nAnswer: The author was born in Kuwait City.",
    "Question: What is the capital of France?\nAnswer: Paris is the capital of France.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
]


def shared_data_dir() -> Path | None:
    """``$BENCH_SHARED_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("BENCH_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    p = shared_data_dir()
    if p is None:
        pytest.skip("benchmark data not found: set BENCH_SHARED_DATA or put ../shared/data beside the repo")
    return p


@pytest.fixture(scope="session")
def tiny_bundle():
    """A ModelBundle of an untrained 2-layer Llama (plain prompt style)."""
    from bench.model_bundle import ModelBundle
    from bench.prompts import from_tokenizer
    from bench.tiny import build_model, build_tokenizer

    tok = build_tokenizer(TEXTS * 4, vocab_size=300)
    model = build_model(tok, seed=0)
    return ModelBundle(model, tok, from_tokenizer(tok, style="plain"), name="tiny-random")


@pytest.fixture(scope="session")
def liven():
    """``liven(model, seed)``: overwrite every weight matrix with N(0, 0.15²) draws, in place,
    so a tiny random model gives varied, non-degenerate greedy outputs; returns the model."""
    import torch

    def apply(model, seed: int):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.15)
        return model

    return apply


@pytest.fixture
def tiny_dir(tmp_path, tiny_bundle):
    """A tiny random model saved as a model directory (used --as-is: no preparing)."""
    from bench.models import save_bundle

    d = tmp_path / "tiny-model"
    save_bundle(tiny_bundle, d)
    return d
