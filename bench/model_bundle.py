"""A model with what every part of the suite needs beside its weights.

Methods receive a :class:`ModelBundle` (``unlearn(model, forget, retain, **options)``):
the torch module, its tokenizer, and the prompt config through which they must tokenise
their training pairs, so that training and evaluation see the same prompts.
"""

from __future__ import annotations

import hashlib
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
    """``(prompt_ids, continuation_ids)`` by the convention of :mod:`bench.requests`."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
    if full[: len(p)] == p:
        return list(p), list(full[len(p):])
    c = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    return list(p), list(c)
