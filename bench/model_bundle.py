"""A model with what every part of the suite needs beside its weights.

Methods receive a :class:`ModelBundle` (``unlearn(model, forget, retain, **options)``):
the torch module, its tokenizer, and the prompt config through which they must tokenise
their training pairs, so that training and evaluation see the same prompts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.prompts import PromptConfig


@dataclass
class ModelBundle:
    module: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    prompt: PromptConfig
    name: str = ""  # alias, hub id or path, as the user gave it
    provenance: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 over the parameter and buffer tensors (names, dtypes, shapes, bytes),
        the tokenizer (:func:`tokenizer_fingerprint`: its vocabulary, merges and rules, not
        only their count) and special tokens, and the prompt config.

        Two bundles with equal fingerprints answer every request identically on the same
        backend settings; it is the model part of the request-cache key.
        """
        import torch

        h = hashlib.sha256()
        for name, t in sorted(self.module.state_dict().items()):
            h.update(name.encode())
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            tc = t.detach().contiguous().cpu()
            if tc.dtype == torch.bfloat16:
                tc = tc.view(torch.int16)
            h.update(tc.numpy().tobytes())
        tok = self.tokenizer
        h.update(repr((len(tok), tok.bos_token, tok.eos_token, tok.pad_token)).encode())
        h.update(tokenizer_fingerprint(tok).encode())
        h.update(repr(sorted(self.prompt.to_dict().items())).encode())
        return h.hexdigest()

    def input_ids(self, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of ``prompt`` and of ``continuation`` after it (see bench.requests).

        Joint tokenization of ``prompt + continuation``; falls back to separate
        tokenization when the prompt's ids are not a prefix of the joint ids.
        """
        return tokenize_pair(self.tokenizer, prompt, continuation)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides a tokenizer's ids: a fast tokenizer's whole definition
    (``backend_tokenizer.to_str()``: normalizer, pre-tokenizer, vocabulary and merges, added
    tokens, post-processor, decoder) less its padding and truncation state, which a call
    with ``padding=True`` changes and the backends never use for ids; else the class and
    the vocabulary. Two tokenizers of one size with other merges (the ``tiny`` alias's,
    trained per task) differ here."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("padding", None)
        state.pop("truncation", None)
        text = json.dumps(state, sort_keys=True, ensure_ascii=False)
    else:
        text = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenize_pair(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """``(prompt_ids, continuation_ids)`` by the convention of :mod:`bench.requests`: the
    continuation's ids are the joint tokenization's ids after the prompt's, or its own ids
    when the prompt's ids are not a prefix of the joint ones."""
    return tokenize_pairs(tokenizer, [(prompt, continuation)])[0]


def tokenize_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """:func:`tokenize_pair` of each ``(prompt, continuation)``, with one batched tokenizer
    call per kind of text (distinct prompts, joint texts, fallback continuations) instead of
    two or three calls per pair: the same ids, a tenth of the time on a fast tokenizer."""
    if not pairs:
        return []

    def ids(texts: list[str]) -> dict[str, list[int]]:
        distinct = list(dict.fromkeys(texts))
        return dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"]))

    prompts = ids([p for p, _ in pairs])
    joint = ids([p + c for p, c in pairs])
    out: list[tuple[list[int], list[int]] | None] = []
    fallback: list[int] = []
    for i, (p, c) in enumerate(pairs):
        pi, full = prompts[p], joint[p + c]
        if full[: len(pi)] == pi:
            out.append((list(pi), list(full[len(pi):])))
        else:
            out.append(None)
            fallback.append(i)
    if fallback:
        conts = ids([pairs[i][1] for i in fallback])
        for i in fallback:
            out[i] = (list(prompts[pairs[i][0]]), list(conts[pairs[i][1]]))
    return out  # type: ignore[return-value]
