"""Model identity in cache keys: a bundle's fingerprint (the request cache's model key) and a
model directory's fingerprint (run and prepared-model keys) change with everything that
changes an answer."""

from __future__ import annotations

from bench.model_bundle import ModelBundle
from bench.prompts import from_tokenizer
from bench.requests import LogLikelihood

A = ["Question: Who wrote the book?\nAnswer: The book was written by Basil Mahfouz.",
     "Question: Where was the author born?\nAnswer: The author was born in Kuwait City."] * 8
B = ["The quick brown fox jumps over the lazy dog while zebras quietly vex jumping wizards.",
     "Pack my box with five dozen liquor jugs; sphinx of black quartz, judge my vow."] * 8


def _same_weights_other_tokenizers() -> tuple[ModelBundle, ModelBundle]:
    """Two bundles with bit-identical weights (seed 0, one vocabulary size) whose tokenizers
    split text differently: the tiny alias's random bases of two tasks without a
    general-knowledge set (MUSE, SemEval, real-world) are exactly this."""
    from bench.tiny import build_model, build_tokenizer

    bundles = []
    for texts in (A, B):
        tok = build_tokenizer(texts, vocab_size=290)
        bundles.append(ModelBundle(build_model(tok, seed=0), tok, from_tokenizer(tok, style="plain")))
    a, b = bundles
    assert len(a.tokenizer) == len(b.tokenizer) == 290
    prompt = "Question: Who wrote the book?\nAnswer:"
    assert a.tokenizer(prompt)["input_ids"] != b.tokenizer(prompt)["input_ids"]
    return a, b


def test_tokenizers_of_one_size_with_other_merges_are_other_models():
    a, b = _same_weights_other_tokenizers()
    assert a.fingerprint() != b.fingerprint()  # before: the same (weights, size and specials only)
    from bench.model_bundle import tokenizer_fingerprint

    assert tokenizer_fingerprint(a.tokenizer) != tokenizer_fingerprint(b.tokenizer)


def test_request_cache_never_answers_one_tokenizer_with_anothers_response(tmp_path):
    """The second model's request is computed, not read from the first's cached answer."""
    from bench.backends.cache import AnsweringLayer
    from bench.backends.hf import HFBackend

    req = [LogLikelihood("Question: Who wrote the book?\nAnswer:", " The book was written by Basil Mahfouz.")]
    for bundle in _same_weights_other_tokenizers():
        direct = HFBackend(bundle).answer(req)[0]
        layer = AnsweringLayer(HFBackend(bundle), bundle.fingerprint(), tmp_path)
        assert layer.answer(req)[0] == direct


def test_the_tokenizer_fingerprint_is_stable(tmp_path):
    """Not changed by a call with padding / truncation (it sets the backend's state), nor by
    a save and reload (a prepared model's fingerprint is checked after reloading it)."""
    from bench.model_bundle import tokenizer_fingerprint
    from bench.models import load_bundle, save_bundle

    a, _ = _same_weights_other_tokenizers()
    fp, tfp = a.fingerprint(), tokenizer_fingerprint(a.tokenizer)
    a.tokenizer(["a", "a longer text"], padding=True, truncation=True, max_length=3)
    assert tokenizer_fingerprint(a.tokenizer) == tfp
    save_bundle(a, tmp_path / "m")
    assert load_bundle(tmp_path / "m").fingerprint() == fp


def test_a_slow_tokenizer_is_fingerprinted_by_its_vocabulary():
    from bench.model_bundle import tokenizer_fingerprint

    class Slow:  # no backend_tokenizer: the vocabulary decides
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return dict(self.vocab)

    assert tokenizer_fingerprint(Slow({"a": 0, "b": 1})) == tokenizer_fingerprint(Slow({"b": 1, "a": 0}))
    assert tokenizer_fingerprint(Slow({"a": 0, "b": 1})) != tokenizer_fingerprint(Slow({"a": 1, "b": 0}))


def test_a_directory_with_torch_bin_weights_changes_fingerprint_with_them(tmp_path):
    """``pytorch_model.bin`` (an older checkpoint format check_model_dir accepts) is part of
    the directory's fingerprint: weights re-saved in place give another run hash, not a
    stale 'already finished' (before, only its config and tokenizer files were hashed)."""
    import torch

    from bench.models import load_bundle
    from bench.provenance import dir_fingerprint
    from bench.tiny import build_model, build_tokenizer

    tok = build_tokenizer(A, vocab_size=290)
    fps = []
    for seed in (0, 1):
        m = build_model(tok, seed=seed)
        m.save_pretrained(tmp_path)
        tok.save_pretrained(tmp_path)
        (tmp_path / "model.safetensors").unlink()
        torch.save(m.state_dict(), tmp_path / "pytorch_model.bin")
        load_bundle(tmp_path)  # a model directory transformers loads
        fps.append(dir_fingerprint(tmp_path))
    assert fps[0] != fps[1]
