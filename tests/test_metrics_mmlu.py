"""MMLU: the CSV reader and prompts (lm-eval's template), and choice accuracy by option
log-likelihood (argmax, ties, normalisation, micro/macro)."""

from __future__ import annotations

import math

import pytest

from bench.errors import BenchError, DataError
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.choice import ChoiceAccuracy
from bench.mmlu import CHOICES, SUBJECTS, mmlu_eval_set, mmlu_items, read_csv
from bench.prompts import PromptConfig
from bench.requests import LogLikelihood, LogLikelihoodResponse

RAW = EvalContext(PromptConfig(style="plain"), format="raw")
HEADER = "question,choice0,choice1,choice2,choice3,answer\n"


def ll(*lp):
    return LogLikelihoodResponse(tuple(lp), (True,) * len(lp))


def _folder(tmp_path, subject="anatomy", dev_rows=5, test_rows=3):
    for split, n in (("dev", dev_rows), ("test", test_rows)):
        (tmp_path / split).mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{split} question {i}?,w{i},x{i},y{i},z{i},{i % 4}\n" for i in range(n))
        (tmp_path / split / f"{subject}_{split}.csv").write_text(HEADER + rows)
    return tmp_path


def test_prompt_format_and_items(tmp_path):
    d = _folder(tmp_path)
    items, files = mmlu_items(d, ["anatomy"], shots=2)
    assert [i.id for i in items] == ["mmlu/anatomy/0", "mmlu/anatomy/1", "mmlu/anatomy/2"]
    want = ("The following are multiple choice questions (with answers) about anatomy.\n\n"
            "dev question 0?\nA. w0\nB. x0\nC. y0\nD. z0\nAnswer: A\n\n"
            "dev question 1?\nA. w1\nB. x1\nC. y1\nD. z1\nAnswer: B\n\n"
            "test question 1?\nA. w1\nB. x1\nC. y1\nD. z1\nAnswer:")
    assert items[1].question == want
    assert items[1].meta == {"choices": CHOICES, "answer_index": 1, "subject": "anatomy"}
    assert items[1].answer == "B" and len(files) == 2
    zero, files0 = mmlu_items(d, "anatomy", shots=0, per_subject=1)
    assert len(zero) == 1 and zero[0].question.startswith("The following") and "Answer: A" not in zero[0].question
    assert len(files0) == 1  # 0-shot reads no dev file
    es, _ = mmlu_eval_set(d, ["anatomy"], shots=5)
    assert es.format == "raw" and es.metrics[0].name == "choice_accuracy"


def test_reader_errors(tmp_path):
    d = _folder(tmp_path)
    with pytest.raises(BenchError, match="unknown subject 'anatomyy'; did you mean 'anatomy'"):
        mmlu_items(d, ["anatomyy"])
    with pytest.raises(BenchError, match="shots must be"):
        mmlu_items(d, ["anatomy"], shots=6)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "q?,a,b,c,d,4\n")
    with pytest.raises(DataError, match="row 0, field 'answer'"):
        read_csv(bad)
    bad.write_text("question,choice0,answer\nq,a,1\n")
    with pytest.raises(DataError, match="header lacks column 'choice1'"):
        read_csv(bad)
    with pytest.raises(BenchError, match="fewer than shots=5"):
        mmlu_items(_folder(tmp_path / "few", dev_rows=3), ["anatomy"], shots=5)


def test_shared_mmlu(shared_data):
    assert len(SUBJECTS) == 57
    for s in SUBJECTS:
        assert (shared_data / "mmlu" / "test" / f"{s}_test.csv").is_file(), s
    items, files = mmlu_items(shared_data, ["anatomy", "astronomy", "virology"], shots=5, per_subject=4)
    assert len(items) == 12 and len(files) == 6
    assert items[0].question.count("\nAnswer: ") == 5 and items[0].question.endswith("\nAnswer:")


def test_choice_accuracy_golden():
    m = ChoiceAccuracy()
    item = Item("mmlu/x/0", "prompt", "C", meta={"choices": CHOICES, "answer_index": 2, "subject": "x"})
    reqs = m.requests(item, RAW)
    assert reqs == [LogLikelihood("prompt", c) for c in (" A", " B", " C", " D")]
    assert m.score(item, [ll(-3.0), ll(-2.0), ll(-0.5), ll(-1.0)], RAW) == 1.0
    assert m.score(item, [ll(-3.0), ll(-0.4), ll(-0.5), ll(-1.0)], RAW) == 0.0
    assert m.score(item, [ll(-0.5), ll(-1.0), ll(-0.5), ll(-1.0)], RAW) == 0.0  # tie -> the first option
    # summed vs per-token: option C = two tokens (-0.4, -0.4) = -0.8 vs D = one token -0.6
    two = [ll(-3.0), ll(-3.0), ll(-0.4, -0.4), ll(-0.6)]
    assert ChoiceAccuracy().score(item, two, RAW) == 0.0
    assert ChoiceAccuracy(normalize="tokens").score(item, two, RAW) == 1.0
    assert m.aggregate([1.0, 0.0, 1.0, None]) == pytest.approx(2 / 3)
    with pytest.raises(BenchError, match="'answer_index'"):
        m.requests(Item("y", "p", "a", meta={"choices": CHOICES, "answer_index": 4}), RAW)
    with pytest.raises(BenchError, match="'choices'"):
        m.requests(Item("y", "p", "a"), RAW)


def test_choice_accuracy_micro_vs_macro():
    # subject a: 3 of 3 right, subject b: 0 of 1 -> micro 3/4, macro (1 + 0)/2
    mac = ChoiceAccuracy(average="macro")
    vals = [{"subject": "a", "correct": 1.0}] * 3 + [{"subject": "b", "correct": 0.0}]
    assert mac.aggregate(vals) == pytest.approx(0.5)
    assert ChoiceAccuracy().aggregate([1.0, 1.0, 1.0, 0.0]) == pytest.approx(0.75)
    item = Item("i", "p", "A", meta={"choices": CHOICES, "answer_index": 0, "subject": "a"})
    assert mac.score(item, [ll(-0.1), ll(-1.0), ll(-1.0), ll(-1.0)], RAW) == {"subject": "a", "correct": 1.0}
    assert math.isclose(ChoiceAccuracy().aggregate([0.0]), 0.0)


def test_evaluate_mmlu_on_the_tiny_model(tmp_path, tiny_bundle, capsys):
    """End to end: prompts -> option likelihoods -> accuracy equals the argmax by hand."""
    from bench.mmlu import evaluate_mmlu, main
    from bench.models import save_bundle

    d = _folder(tmp_path / "mmlu", test_rows=4)
    model = tmp_path / "model"
    save_bundle(tiny_bundle, model)
    out = evaluate_mmlu(str(model), d, ["anatomy"], shots=1, cache=False)
    assert out["questions"] == 4 and 0.0 <= out["accuracy"] <= 1.0
    # by hand: sum of log-probs of " A".." D" after the prompt, with the model directly
    import torch

    items, _ = mmlu_items(d, ["anatomy"], shots=1)
    tok, lm = tiny_bundle.tokenizer, tiny_bundle.module
    right = 0
    for it in items:
        scores = []
        for c in CHOICES:
            p_ids = tok(it.question, add_special_tokens=False)["input_ids"]
            full = tok(it.question + c, add_special_tokens=False)["input_ids"]
            assert full[:len(p_ids)] == p_ids
            with torch.no_grad():
                logp = torch.log_softmax(lm(torch.tensor([full])).logits[0].float(), -1)
            scores.append(sum(logp[i - 1, full[i]].item() for i in range(len(p_ids), len(full))))
        right += int(max(range(4), key=lambda i: (scores[i], -i)) == it.meta["answer_index"])
    assert out["accuracy"] == pytest.approx(right / 4)
    assert main(["--model", str(model), "--data-dir", str(d), "--subjects", "anatomy", "--shots", "0"]) == 0
    assert "MMLU 0-shot accuracy" in capsys.readouterr().out
