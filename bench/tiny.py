"""Tiny Llama models the suite builds itself: the offline fast path for tests and the
embedded default (alias ``tiny``).

* :func:`build_tokenizer` trains a byte-level BPE tokenizer (``tokenizers``) on the given
  texts, wrapped as a ``PreTrainedTokenizerFast`` with ``<s>``/``</s>``/``<pad>``.
* :func:`build_model` makes a randomly initialised ``LlamaForCausalLM`` for that
  vocabulary, seeded: by default hidden 64, 2 layers, 4 heads (~0.2M parameters with a 1k
  vocabulary; the ``tiny`` alias's shape is :data:`bench.models.TINY_SHAPE`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def build_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL["pad_token"], SPECIAL["bos_token"], SPECIAL["eos_token"], SPECIAL["unk_token"]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)
    fast.padding_side = "left"
    return fast


def build_model(tokenizer: Any, hidden: int = 64, layers: int = 2, heads: int = 4,
                max_positions: int = 512, seed: int = 0, kv_heads: int | None = None) -> Any:
    """A randomly initialised small ``LlamaForCausalLM`` matching ``tokenizer`` (fp32, eval mode);
    ``kv_heads`` < ``heads`` gives grouped-query attention (default: one KV head per head)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model
