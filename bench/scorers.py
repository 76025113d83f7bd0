"""Model-based scorers for metrics: sentence embeddings and sequence classifiers.

Some metrics judge a generation with a second model: cosine similarity of sentence
embeddings (closer-look CS), NLI entailment (closer-look ES) and a gibberish classifier
(open-unlearning). These scorers are not the evaluated model, so they are not backend
requests; what they need is the same discipline as a backend:

* **loaded once per process**: :func:`embedder` and :func:`classifier` return the pooled
  instance for a (model, device, settings) key; every metric of every eval set, every
  continual step and every run of a sweep in one process shares it (:data:`LOADS` counts
  real loads; :func:`release` frees them);
* **batched**: each call dedupes its texts, sorts them by length (fewer pad tokens per
  batch) and runs batches of ``batch_size``; results come back in input order;
* **deterministic**: eval mode, no dropout, float32 softmax;
* **accounted**: :data:`USAGE` sums, per ``"<kind>:<model>"``, the calls, input texts,
  distinct texts actually run and seconds (the engine records the change per run in
  ``results.json`` ``timings.scorers``).

Defaults are the papers' hub models (:data:`EMBEDDING_MODEL`, :data:`NLI_MODEL`,
:data:`GIBBERISH_MODEL`); a local directory works wherever a hub id does. Heavy libraries
(sentence-transformers, transformers) are imported on first use.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError

EMBEDDING_MODEL = "sentence-transformers/paraphrase-MiniLM-L6-v2"  # closer-look CS
NLI_MODEL = "sileod/deberta-v3-base-tasksource-nli"  # closer-look ES
GIBBERISH_MODEL = "madhurjindal/autonlp-Gibberish-Detector-492513457"  # open-unlearning

_POOL: dict[tuple, Any] = {}
LOADS: Counter = Counter()  # (kind, model) -> number of loads in this process
USAGE: dict[str, Counter] = {}  # "<kind>:<model>" -> calls, texts, distinct, seconds (this process)


def _account(kind: str, model: str, texts: int, distinct: int, seconds: float) -> None:
    u = USAGE.setdefault(f"{kind}:{model}", Counter())
    u["calls"] += 1
    u["texts"] += texts
    u["distinct"] += distinct
    u["seconds"] += seconds


def usage_since(before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """What :data:`USAGE` gained since the snapshot ``before`` (``snapshot()``), rounded."""
    out: dict[str, dict[str, float]] = {}
    for key, u in USAGE.items():
        b = before.get(key, {})
        d = {k: u[k] - b.get(k, 0) for k in ("calls", "texts", "distinct", "seconds")}
        if d["calls"]:
            d["seconds"] = round(d["seconds"], 3)
            out[key] = d
    return out


def snapshot() -> dict[str, dict[str, float]]:
    """A copy of :data:`USAGE` (for :func:`usage_since`)."""
    return {k: dict(v) for k, v in USAGE.items()}


def _device(device: str | None) -> str:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _distinct_by_length(keys: Sequence[Any], length: Any) -> tuple[list[Any], list[int]]:
    """Distinct ``keys`` sorted longest first, and for each input its index in that list."""
    distinct = list(dict.fromkeys(keys))
    distinct.sort(key=lambda k: -length(k))
    pos = {k: i for i, k in enumerate(distinct)}
    return distinct, [pos[k] for k in keys]


class Embedder:
    """A sentence-transformers model: :meth:`embed` texts, :meth:`cosine` of text pairs."""

    kind = "embedding"

    def __init__(self, model: str, device: str | None = None, batch_size: int = 64):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise BenchError("embedding scorer needs sentence-transformers: "
                             "pip install 'unlearning-bench[embed]'") from e
        self.model_name, self.device, self.batch_size = model, _device(device), batch_size
        try:
            self.model = SentenceTransformer(model, device=self.device)
        except OSError as e:
            raise BenchError(f"embedding scorer: cannot load '{model}': {str(e).splitlines()[0]}") from e
        self.model.eval()
        LOADS[(self.kind, model)] += 1

    def embed(self, texts: Sequence[str]) -> Any:
        """``[len(texts), dim]`` float32 numpy array (not normalised), in input order."""
        import numpy as np

        distinct, where = _distinct_by_length(list(texts), len)
        if not distinct:
            dim = self.model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        t0 = time.perf_counter()
        vecs = self.model.encode(distinct, batch_size=self.batch_size, convert_to_numpy=True,
                                 show_progress_bar=False)
        _account(self.kind, self.model_name, len(texts), len(distinct), time.perf_counter() - t0)
        return np.asarray(vecs, dtype=np.float32)[where]

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> list[float]:
        """Cosine similarity of ``e(a[i])`` and ``e(b[i])`` per pair (in [-1, 1]; 0 for a zero vector)."""
        import numpy as np

        if len(a) != len(b):
            raise BenchError(f"cosine: {len(a)} texts against {len(b)}")
        if not a:
            return []
        e = self.embed(list(a) + list(b))
        x, y = e[: len(a)].astype(np.float64), e[len(a):].astype(np.float64)
        nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
        dot = (x * y).sum(1)
        den = nx * ny
        return [float(d / n) if n > 0 else 0.0 for d, n in zip(dot, den)]


class Classifier:
    """A transformers sequence classifier (NLI on (premise, hypothesis) pairs, gibberish on texts).

    :meth:`probabilities` returns softmax class probabilities (float32 softmax of the
    logits); :attr:`labels` maps class index to the model's label name. Inputs are
    truncated to ``max_length`` tokens (the model's limit when None).
    """

    kind = "classifier"

    def __init__(self, model: str, device: str | None = None, batch_size: int = 32,
                 max_length: int | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model_name, self.device, self.batch_size = model, _device(device), batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model)
        except OSError as e:
            raise BenchError(f"classifier scorer: cannot load '{model}': {str(e).splitlines()[0]}") from e
        self.model.to(self.device).eval()
        limit = getattr(self.tokenizer, "model_max_length", None)
        if max_length is None:
            max_length = limit if isinstance(limit, int) and limit < 100_000 else 512
        self.max_length = max_length
        n = self.model.config.num_labels
        self.labels = [self.model.config.id2label.get(i, str(i)) for i in range(n)]
        LOADS[(self.kind, model)] += 1

    def label_index(self, name: str) -> int:
        """Index of the class called ``name`` (case-insensitive)."""
        for i, lab in enumerate(self.labels):
            if lab.lower() == name.lower():
                return i
        raise BenchError(f"classifier '{self.model_name}' has no label '{name}' (labels: {', '.join(self.labels)})")

    def probabilities(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Any:
        """``[len(texts), num_labels]`` float32 numpy array; ``pairs[i]`` is the second
        segment of input ``i`` (NLI: texts = premises, pairs = hypotheses)."""
        import numpy as np
        import torch

        if pairs is not None and len(pairs) != len(texts):
            raise BenchError(f"classifier: {len(texts)} texts against {len(pairs)} pairs")
        keys = list(zip(texts, pairs)) if pairs is not None else [(t, None) for t in texts]
        distinct, where = _distinct_by_length(keys, lambda k: len(k[0]) + len(k[1] or ""))
        out = np.zeros((len(distinct), len(self.labels)), dtype=np.float32)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, len(distinct), self.batch_size):
                chunk = distinct[s:s + self.batch_size]
                first = [k[0] for k in chunk]
                second = [k[1] for k in chunk] if pairs is not None else None
                enc = self.tokenizer(first, second, padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                logits = self.model(**enc.to(self.device)).logits.float()
                out[s:s + len(chunk)] = torch.softmax(logits, -1).cpu().numpy()
        _account(self.kind, self.model_name, len(texts), len(distinct), time.perf_counter() - t0)
        return out[where]


def embedder(model: str = EMBEDDING_MODEL, *, device: str | None = None, batch_size: int = 64) -> Embedder:
    """The process-wide :class:`Embedder` of ``model`` on ``device`` (loaded on first use)."""
    key = (Embedder.kind, model, _device(device), batch_size)
    if key not in _POOL:
        _POOL[key] = Embedder(model, device, batch_size)
    return _POOL[key]


def classifier(model: str, *, device: str | None = None, batch_size: int = 32,
               max_length: int | None = None) -> Classifier:
    """The process-wide :class:`Classifier` of ``model`` (loaded on first use)."""
    key = (Classifier.kind, model, _device(device), batch_size, max_length)
    if key not in _POOL:
        _POOL[key] = Classifier(model, device, batch_size, max_length)
    return _POOL[key]


def release() -> None:
    """Drop every pooled scorer (frees their memory; the next call loads again)."""
    import gc

    _POOL.clear()
    gc.collect()
