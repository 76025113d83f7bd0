"""The shared training loop: encoding, padding, NLL reductions, determinism, fine-tuning."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from bench.errors import BenchError
from bench.items import Item
from bench.model_bundle import ModelBundle, tokenize_pair
from bench.training import (
    IGNORE,
    TOFU,
    _lr_lambda,
    batch_nll,
    collate,
    encode_pairs,
    finetune,
    pad_id,
    token_mean_nll,
    train,
)

ITEMS = [
    Item("a", "Who wrote the book?", "The book was written by Basil Mahfouz."),
    Item("b", "Where was the author born?", "The author was born in Kuwait City."),
    Item("c", "What is the capital of France?", "Paris is the capital of France."),
    Item("d", "Who jumps over the lazy dog?", "The quick brown fox."),
]


def fresh(bundle: ModelBundle) -> ModelBundle:
    """A bundle with its own copy of the module (the session fixture stays untouched)."""
    return ModelBundle(copy.deepcopy(bundle.module), bundle.tokenizer, bundle.prompt, bundle.name)


def teacher_forced_accuracy(bundle: ModelBundle, items) -> float:
    batch = collate(encode_pairs(bundle, items, 512), pad_id(bundle.tokenizer))
    with torch.no_grad():
        logits = bundle.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    return ((logits[:, :-1].argmax(-1) == labels) & mask).sum().item() / mask.sum().item()


# ----------------------------------------------------------------------------- encoding


def test_encode_pairs_masks_prompt_exactly(tiny_bundle):
    enc = encode_pairs(tiny_bundle, ITEMS, 512)
    for it, e in zip(ITEMS, enc):
        prompt = tiny_bundle.prompt.prompt(it.question, tiny_bundle.tokenizer)
        p, c = tokenize_pair(tiny_bundle.tokenizer, prompt, tiny_bundle.prompt.continuation(it.answer))
        assert e["input_ids"] == p + c
        assert e["labels"] == [IGNORE] * len(p) + c
        assert c[-1] == tiny_bundle.tokenizer.eos_token_id  # plain style scores the EOS


def test_encode_pairs_truncates_and_rejects_answerless(tiny_bundle):
    full = encode_pairs(tiny_bundle, ITEMS[:1], 512)[0]
    n_prompt = full["labels"].count(IGNORE)
    cut = encode_pairs(tiny_bundle, ITEMS[:1], n_prompt + 2)[0]
    assert cut["input_ids"] == full["input_ids"][: n_prompt + 2]
    assert cut["labels"] == full["labels"][: n_prompt + 2]
    with pytest.raises(BenchError, match="item 'a': no answer token within max_length"):
        encode_pairs(tiny_bundle, ITEMS[:1], n_prompt)


def test_collate_right_pads_with_masks():
    b = collate([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]},
                 {"input_ids": [8], "labels": [8]}], pad=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(BenchError):
        collate([], pad=0)


def test_pad_id_falls_back_to_eos_then_zero():
    assert pad_id(SimpleNamespace(pad_token_id=3, eos_token_id=2)) == 3
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0


# ----------------------------------------------------------------------------- losses


class FixedLogits(torch.nn.Module):
    """A 'model' that returns the same logits whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        return SimpleNamespace(logits=self.logits)


def test_batch_nll_sum_and_mean_by_hand():
    # vocab 3; probabilities chosen so the answer-token NLLs are ln 2, ln 4, ln 3
    ln = math.log
    logits = torch.zeros(2, 4, 3)
    logits[0, 1] = torch.tensor([ln(1), ln(2), ln(1)])  # p(1) = 1/2
    logits[0, 2] = torch.tensor([ln(2), ln(1), ln(1)])  # p(2) = 1/4
    logits[1, 0] = torch.tensor([0.0, 0.0, 0.0])        # p(2) = 1/3
    batch = {
        "input_ids": torch.zeros(2, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]),
        "labels": torch.tensor([[IGNORE, IGNORE, 1, 2], [IGNORE, 2, IGNORE, IGNORE]]),
    }
    model = FixedLogits(logits)
    s = batch_nll(model, batch, "sum")
    m = batch_nll(model, batch, "mean")
    assert s.tolist() == pytest.approx([ln(2) + ln(4), ln(3)], abs=1e-6)
    assert m.tolist() == pytest.approx([(ln(2) + ln(4)) / 2, ln(3)], abs=1e-6)
    assert token_mean_nll(model, batch).item() == pytest.approx((ln(2) + ln(4) + ln(3)) / 3, abs=1e-6)
    with pytest.raises(BenchError):
        batch_nll(model, batch, "max")


def test_token_mean_nll_equals_hf_loss(tiny_bundle):
    batch = collate(encode_pairs(tiny_bundle, ITEMS, 512), pad_id(tiny_bundle.tokenizer))
    with torch.no_grad():
        hf = tiny_bundle.module(**batch).loss.item()
        ours = token_mean_nll(tiny_bundle.module, batch).item()
        sums = batch_nll(tiny_bundle.module, batch, "sum")
    assert ours == pytest.approx(hf, rel=1e-5)
    # the sum of one sequence equals its unpadded single-sequence sum
    single = collate(encode_pairs(tiny_bundle, ITEMS[3:], 512), 0)
    with torch.no_grad():
        alone = batch_nll(tiny_bundle.module, single, "sum")
    assert sums[3].item() == pytest.approx(alone[0].item(), rel=1e-4)


def _full_forward_nll(model, batch):
    """Per-token NLL from the model's own full forward (every position through the head)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), batch["labels"][:, 1:],
                                             ignore_index=IGNORE, reduction="none")


def test_answer_positions_only_through_the_head_same_values_and_gradients(tiny_bundle):
    from bench.training import token_nll

    batch = collate(encode_pairs(tiny_bundle, ITEMS, 512), pad_id(tiny_bundle.tokenizer))
    a, b = fresh(tiny_bundle).module, fresh(tiny_bundle).module
    head_rows = []
    hook = a.get_output_embeddings().register_forward_hook(lambda m, i, o: head_rows.append(i[0].shape[0]))
    nll, mask = token_nll(a, batch)
    hook.remove()
    n_labels = int((batch["labels"][:, 1:] != IGNORE).sum())
    # the first call checks both ways (full forward: [B, T, H] input), then uses the answer rows only
    assert a._bench_answer_logits == "llama" and head_rows[-1] == n_labels
    full = _full_forward_nll(b, batch)
    assert torch.allclose(nll, full, atol=1e-5) and nll[~mask].abs().sum() == 0
    (nll.sum() / mask.sum()).backward()
    (full.sum() / mask.sum()).backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5), name


def test_a_model_whose_forward_does_more_than_its_head_keeps_the_full_forward(tiny_bundle):
    from bench.training import token_nll

    class Scaled(type(tiny_bundle.module)):  # logits scaled after the head (as Cohere / soft-capping do)
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 0.5
            return out

    m = Scaled(tiny_bundle.module.config)
    m.load_state_dict(tiny_bundle.module.state_dict())
    m.eval()
    batch = collate(encode_pairs(tiny_bundle, ITEMS, 512), pad_id(tiny_bundle.tokenizer))
    with torch.no_grad():
        nll, _ = token_nll(m, batch)
        assert m._bench_answer_logits is False
        assert torch.allclose(nll, _full_forward_nll(m, batch), atol=1e-6)
        assert torch.allclose(token_nll(m, batch)[0], nll)  # the verdict sticks


# ----------------------------------------------------------------------------- loop


def test_lr_schedule_is_linear_with_warmup():
    f = _lr_lambda(2, 6)
    assert [f(s) for s in range(7)] == pytest.approx([0, 0.5, 1, 0.75, 0.5, 0.25, 0])


def test_train_pairs_anchor_with_random_other_split(tiny_bundle):
    b = fresh(tiny_bundle)
    forget, retain = ITEMS[:3], ITEMS[3:]
    seen = []

    def loss(module, batches):
        seen.append({k: v["input_ids"].shape[0] for k, v in batches.items()})
        return token_mean_nll(module, batches["forget"])

    log = train(b, loss, {"retain": retain, "forget": forget}, epochs=2, lr=1e-3,
                batch_size=2, grad_accum=1, warmup_epochs=1.0, max_length=64, seed=1)
    # forget anchors (3 items -> micro-batches of 2 and 1), retain batch matches in size
    assert seen == [{"forget": 2, "retain": 2}, {"forget": 1, "retain": 1}] * 2
    assert log.steps == 4 and log.warmup_steps == 1 and len(log.losses) == 4
    assert not b.module.training
    assert all(p.grad is None for p in b.module.parameters())
    assert b.provenance["training"][-1]["steps"] == 4


def test_grad_accum_groups_micro_batches(tiny_bundle):
    b = fresh(tiny_bundle)
    log = train(b, lambda m, x: token_mean_nll(m, x["train"]), {"train": ITEMS * 3},
                epochs=1, lr=1e-3, batch_size=2, grad_accum=4, warmup_epochs=1.0, max_length=64)
    # 12 items -> 6 micro-batches -> steps of 4 + 2; warm-up int(12 // 8) = 1
    assert log.steps == 2 and len(log.losses) == 2 and log.warmup_steps == 1


def test_train_is_deterministic_given_seed(tiny_bundle):
    def run(seed):
        b = fresh(tiny_bundle)
        train(b, lambda m, x: token_mean_nll(m, x["forget"]) + token_mean_nll(m, x["retain"]),
              {"forget": ITEMS[:2], "retain": ITEMS[2:]}, epochs=2, lr=1e-3, batch_size=1,
              grad_accum=2, max_length=64, seed=seed)
        return b.module.state_dict()

    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_train_rejects_bad_settings(tiny_bundle):
    b = fresh(tiny_bundle)
    loss = lambda m, x: token_mean_nll(m, x["forget"])  # noqa: E731
    with pytest.raises(BenchError, match="empty"):
        train(b, loss, {"forget": []}, epochs=1, lr=1e-3)
    with pytest.raises(BenchError, match="anchor"):
        train(b, loss, {"forget": ITEMS}, anchor="retain", epochs=1, lr=1e-3)
    with pytest.raises(BenchError, match="epochs"):
        train(b, loss, {"forget": ITEMS}, epochs=0, lr=1e-3)
    with pytest.raises(BenchError, match="optimizer"):
        train(b, loss, {"forget": ITEMS}, epochs=1, lr=1e-3, optimizer="sgd9")
    with pytest.raises(BenchError, match="loss became"):
        train(b, lambda m, x: token_mean_nll(m, x["forget"]) * float("nan"),
              {"forget": ITEMS}, epochs=1, lr=1e-3)


def test_tofu_defaults():
    assert (TOFU.lr, TOFU.epochs, TOFU.batch_size, TOFU.grad_accum) == (1e-5, 10, 8, 4)
    assert (TOFU.weight_decay, TOFU.warmup_epochs, TOFU.max_length) == (0.01, 1.0, 512)


def test_finetune_memorises_pairs(tiny_bundle):
    b = fresh(tiny_bundle)
    assert teacher_forced_accuracy(b, ITEMS) < 0.2
    log = finetune(b, ITEMS, epochs=40, lr=5e-3, batch_size=1, max_length=64)
    assert log.losses[-1] < 0.1 * log.losses[0]
    assert teacher_forced_accuracy(b, ITEMS) > 0.95
    # the session fixture's module was not touched
    assert teacher_forced_accuracy(tiny_bundle, ITEMS) < 0.2


@pytest.mark.slow
def test_finetune_200_pairs_quickly():
    """The tiny-model path `bench prepare` relies on: 200 pairs memorised in seconds."""
    import random
    import time

    from bench.prompts import from_tokenizer
    from bench.tiny import build_model, build_tokenizer

    rng = random.Random(0)
    names = ["Alba Moreno", "Kenji Sato", "Ivo Petrov", "Lena Brandt", "Omar Haddad"]
    cities = ["Lisbon", "Osaka", "Sofia", "Bremen", "Amman", "Malmo", "Cadiz"]
    items = []
    for i in range(200):
        n = rng.choice(names)
        if i % 2:
            items.append(Item(str(i), f"Where was {n} born (record {i})?", f"{n} was born in {rng.choice(cities)}."))
        else:
            items.append(Item(str(i), f"When was {n} born (record {i})?", f"{n} was born in {rng.randrange(1900, 2000)}."))
    tok = build_tokenizer([f"Question: {x.question}\nAnswer: {x.answer}" for x in items], vocab_size=1024)
    b = ModelBundle(build_model(tok, seed=0), tok, from_tokenizer(tok, style="plain"))
    t0 = time.perf_counter()
    finetune(b, items, epochs=60, lr=3e-3, batch_size=16)
    assert time.perf_counter() - t0 < 60
    assert teacher_forced_accuracy(b, items) > 0.97


def test_document_split_is_chunked_not_truncated(tiny_bundle):
    from bench.items import Item, Split
    from bench.prompts import default_bos

    text = " ".join(f"word{i}" for i in range(60))
    ids = tiny_bundle.tokenizer(default_bos(tiny_bundle.tokenizer) + text, add_special_tokens=False)["input_ids"]
    enc = encode_pairs(tiny_bundle, Split([Item("d/0", "", text)], format="document"), 16)
    assert [t for e in enc for t in e["input_ids"]] == ids  # every token kept, in order
    assert all(len(e["input_ids"]) <= 16 for e in enc) and len(enc) == -(-len(ids) // 16)
    assert all(e["labels"] == e["input_ids"] for e in enc)


def test_raw_split_is_verbatim(tiny_bundle):
    from bench.items import Item, Split
    from bench.model_bundle import tokenize_pair
    from bench.prompts import default_bos

    item = Item("r/0", "The sky is", " blue")
    enc = encode_pairs(tiny_bundle, Split([item], format="raw"), 512)[0]
    p, c = tokenize_pair(tiny_bundle.tokenizer, default_bos(tiny_bundle.tokenizer) + "The sky is", " blue")
    assert enc["input_ids"] == p + c and enc["labels"] == [-100] * len(p) + c
