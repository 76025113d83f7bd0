"""bench.answer_logits: the labelled positions' logits without the work that cannot reach
them — the same values and gradients as the model's full forward, on the paths' own terms
(what runs on which rows), and the fallbacks."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.answer_logits import ATTR, answer_logits
from bench.items import Item
from bench.training import IGNORE, collate, encode_pairs, pad_id, token_nll

ITEMS = [  # lengths differ: the batch is right-padded
    Item("a", "Who wrote the book?", "The book was written by Basil Mahfouz."),
    Item("b", "Where was the author born?", "Kuwait City."),
    Item("c", "What is the capital of France and of its neighbour Spain?", "Paris; Madrid."),
    Item("d", "Who jumps?", "The quick brown fox jumps over the lazy dog, twice."),
]


def _batch(bundle):
    return collate(encode_pairs(bundle, ITEMS, 512), pad_id(bundle.tokenizer))


def _left_padded(batch):
    """The same rows with their padding moved to the left."""
    flip = {k: v.clone() for k, v in batch.items()}
    for i, n in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
        for k in flip:
            flip[k][i] = torch.roll(batch[k][i], shifts=batch[k].shape[1] - n)
    return flip


def _full_nll(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), batch["labels"][:, 1:],
                                             ignore_index=IGNORE, reduction="none")


def _same_values_and_grads(a, b, batch, params=None):
    nll, mask = token_nll(a, batch)
    full = _full_nll(b, batch)
    assert torch.allclose(nll, full, atol=1e-5) and nll[~mask].abs().sum() == 0
    (nll.sum() / mask.sum()).backward()
    (full.sum() / mask.sum()).backward()
    pairs = [(n, p, q) for (n, p), q in zip(a.named_parameters(), b.parameters()) if p.requires_grad]
    assert pairs
    for name, pa, pb in pairs:
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5), name


def _model(tiny_bundle, liven, seed=1, **shape):
    from bench.tiny import build_model

    m = build_model(tiny_bundle.tokenizer, **shape) if shape else copy.deepcopy(tiny_bundle.module)
    return liven(m, seed).train()


def test_llama_path_equals_the_full_forward_and_skips_padding_and_prompt(tiny_bundle, liven):
    a, b = _model(tiny_bundle, liven), _model(tiny_bundle, liven)
    batch = _batch(tiny_bundle)
    n_real = int(batch["attention_mask"].sum())
    n_labels = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert n_real < batch["input_ids"].numel()  # padded
    rows = {}
    hooks = [mod.register_forward_hook(lambda m, i, o, k=k: rows.setdefault(k, []).append(i[0].shape))
             for k, mod in (("mlp0", a.model.layers[0].mlp), ("mlp1", a.model.layers[-1].mlp),
                            ("q1", a.model.layers[-1].self_attn.q_proj), ("k1", a.model.layers[-1].self_attn.k_proj),
                            ("head", a.lm_head))]
    _same_values_and_grads(a, b, batch)
    for h in hooks:
        h.remove()
    assert getattr(a, ATTR) == "llama"
    # after the first call's check: the first layer's MLP on the real tokens only, the last
    # layer's keys on the real tokens, its queries, MLP and the LM head on the labelled ones
    assert rows["mlp0"][-1] == (n_real, 64)
    assert rows["k1"][-1] == (n_real, 64)
    assert rows["q1"][-1] == rows["mlp1"][-1] == rows["head"][-1] == (n_labels, 64)


def test_grouped_query_attention(tiny_bundle, liven):
    shape = {"hidden": 64, "layers": 3, "heads": 4, "kv_heads": 2}
    a, b = _model(tiny_bundle, liven, **shape), _model(tiny_bundle, liven, **shape)
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "llama"


def test_single_layer_model(tiny_bundle, liven):
    a, b = _model(tiny_bundle, liven, layers=1), _model(tiny_bundle, liven, layers=1)
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "llama"


def test_left_padded_batch_takes_the_head_path(tiny_bundle, liven):
    batch = _batch(tiny_bundle)
    flip = _left_padded(batch)
    a, b = _model(tiny_bundle, liven), _model(tiny_bundle, liven)
    mask = flip["labels"][:, 1:] != IGNORE
    from bench.answer_logits import _llama_path

    with torch.no_grad():
        assert _llama_path(a, flip, mask) is None
    _same_values_and_grads(a, b, flip)
    assert getattr(a, ATTR) == "head"


def test_a_left_padded_batch_after_the_llama_verdict_goes_the_head_path(tiny_bundle, liven):
    batch = _batch(tiny_bundle)
    flip = _left_padded(batch)
    a, b = _model(tiny_bundle, liven), _model(tiny_bundle, liven)
    with torch.no_grad():
        token_nll(a, batch)
    assert getattr(a, ATTR) == "llama"
    _same_values_and_grads(a, b, flip)


def test_lora_adapters_get_the_full_forwards_gradients(tiny_bundle, liven):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0)
    a = get_peft_model(_model(tiny_bundle, liven), cfg)
    b = get_peft_model(_model(tiny_bundle, liven), cfg)
    b.load_state_dict(a.state_dict())
    for m in (a, b):  # adapters away from their zero init, so that they matter
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.full_like(p, 0.05))
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "llama"


def test_gradient_checkpointing_recomputes_through_torch_checkpoint(tiny_bundle, liven, monkeypatch):
    import torch.utils.checkpoint as cp

    calls = []
    real = cp.checkpoint
    monkeypatch.setattr(cp, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    a, b = _model(tiny_bundle, liven), _model(tiny_bundle, liven)
    a.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "llama" and len(calls) >= 2  # every layer of the training call


def test_qwen2_with_projection_biases_takes_the_llama_path(tiny_bundle, liven):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tok = tiny_bundle.tokenizer
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id)
    a = liven(Qwen2ForCausalLM(cfg), 3).train()
    with torch.no_grad():
        a.model.layers[0].self_attn.q_proj.bias.normal_(0, 0.5)
    b = copy.deepcopy(a)
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "llama"


def test_a_sliding_window_longer_than_the_batch_still_takes_the_head_path(tiny_bundle, liven):
    """Mistral's window: the first batch fits inside it (so the values would agree), but a
    later, longer batch would not: the config alone decides."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    tok = tiny_bundle.tokenizer
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=1000,
                        tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    a = liven(MistralForCausalLM(cfg), 4).train()
    b = copy.deepcopy(a)
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "head"
    cfg.sliding_window = None  # without a window it is Llama's shape
    c = liven(MistralForCausalLM(cfg), 4).train()
    _same_values_and_grads(c, copy.deepcopy(c), _batch(tiny_bundle))
    assert getattr(c, ATTR) == "llama"


def test_a_layer_of_another_shape_falls_back_to_the_head_path(tiny_bundle, liven):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    tok = tiny_bundle.tokenizer
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, head_dim=16, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id)
    a = liven(Qwen3ForCausalLM(cfg), 2).train()
    b = copy.deepcopy(a)
    _same_values_and_grads(a, b, _batch(tiny_bundle))
    assert getattr(a, ATTR) == "head"  # per-head q/k norms: not computed by hand


def test_no_decoder_head_pair_means_the_full_forward(tiny_bundle):
    class Bare(torch.nn.Module):
        def forward(self, **kw):
            raise AssertionError("not called")

    assert answer_logits(Bare(), _batch(tiny_bundle), torch.ones(1, dtype=torch.bool)) is None


@pytest.mark.parametrize("training", [True, False])
def test_the_check_leaves_the_mode_and_draws_no_random_numbers(tiny_bundle, liven, training):
    a = _model(tiny_bundle, liven).train(training)
    state = torch.get_rng_state()
    batch = _batch(tiny_bundle)
    with torch.no_grad():
        token_nll(a, batch)
    assert a.training is training and torch.equal(state, torch.get_rng_state())


def test_rows_of_different_block_counts_attend_in_groups_with_the_same_values(tiny_bundle, liven, monkeypatch):
    """Rows of 1 to 5 blocks of 32 positions, out of order: attention runs per group of
    rows with the same block count (the rows reordered, each group padded to its own
    longest row) and the logits come back in the batch's order, equal to the full
    forward's, gradients too."""
    import bench.answer_logits as al

    words = "the author wrote many books about the sea and the city".split()
    items = [Item(str(i), "Who " + " ".join(words[:q]) + "?", " ".join((words * 8)[:a]) + ".")
             for i, (q, a) in enumerate([(9, 40), (1, 2), (5, 14), (2, 3), (11, 24)])]
    batch = collate(encode_pairs(tiny_bundle, items, 512), pad_id(tiny_bundle.tokenizer))
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    blocks = [-(-n // al.BLOCK) for n in lengths]
    kinds = sorted(set(blocks))
    assert len(kinds) >= 3 and blocks != sorted(blocks), lengths
    seen = []
    real = al._groups
    monkeypatch.setattr(al, "_groups", lambda *a: seen.append(real(*a)) or seen[-1])
    a, b = _model(tiny_bundle, liven), _model(tiny_bundle, liven)
    _same_values_and_grads(a, b, batch)
    assert getattr(a, ATTR) == "llama"
    groups = seen[-1]
    assert [g.r1 - g.r0 for g in groups] == [blocks.count(k) for k in kinds]
    assert [g.t for g in groups] == [max(n for n, k in zip(lengths, blocks) if k == c) for c in kinds]
