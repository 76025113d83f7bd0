"""MMLU (Hendrycks et al. 2021) as a multiple-choice eval set, prompted as
lm-evaluation-harness's ``mmlu`` task.

Data: a local folder with ``dev/<subject>_dev.csv`` (5 rows per subject, the few-shot pool)
and ``test/<subject>_test.csv``, CSV header ``question,choice0,choice1,choice2,choice3,answer``
with ``answer`` the index 0-3 (the layout of ``../shared/data/mmlu``); without a folder,
the hub dataset ``cais/mmlu`` (``question``, ``choices``, ``answer``; splits ``dev``/``test``).

Prompt (lm-eval ``mmlu`` default template), ``k`` shots = the first ``k`` dev rows:

    The following are multiple choice questions (with answers) about <subject words>.\\n\\n
    <q>\\nA. <c0>\\nB. <c1>\\nC. <c2>\\nD. <c3>\\nAnswer: <letter>\\n\\n      (× k)
    <q>\\nA. <c0>\\nB. <c1>\\nC. <c2>\\nD. <c3>\\nAnswer:

(questions ``strip()``-ed, subject underscores as spaces); the options scored are the
continuations ``" A"``, ``" B"``, ``" C"``, ``" D"`` (set format ``raw``: BOS + prompt, no
chat template) with :class:`bench.metrics.choice.ChoiceAccuracy`. ``per_subject`` keeps
the first N test rows of each subject (the full 14,042 questions are for GPU boxes).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, DataError
from bench.items import EvalSet, Item, MetricSpec

HUB_REPO = "cais/mmlu"
LETTERS = ("A", "B", "C", "D")
CHOICES = tuple(f" {x}" for x in LETTERS)
FIELDS = ("question", "choice0", "choice1", "choice2", "choice3", "answer")
DATA_ENV = "BENCH_MMLU_DIR"

SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics",
    "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic",
    "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics",
    "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law",
    "professional_medicine", "professional_psychology", "public_relations",
    "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
)


def check_subjects(subjects: Sequence[str] | str | None) -> list[str]:
    """The subjects to use (all 57 for ``None``/``"all"``; a comma list is accepted)."""
    if subjects is None or subjects == "all":
        return list(SUBJECTS)
    if isinstance(subjects, str):
        subjects = [s.strip() for s in subjects.split(",") if s.strip()]
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], SUBJECTS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise BenchError(f"mmlu: unknown subject '{unknown[0]}'{hint} (57 subjects, see bench.mmlu.SUBJECTS)")
    if not subjects:
        raise BenchError("mmlu: no subject given")
    return list(dict.fromkeys(subjects))


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows ``{question, choices: [4], answer: int}`` of one MMLU CSV (errors name file/row/field)."""
    if not path.is_file():
        raise DataError(path, "file not found")
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"header lacks column '{missing[0]}' (expected {','.join(FIELDS)})")
        for i, r in enumerate(reader):
            try:
                ans = int(r["answer"])
            except (TypeError, ValueError):
                raise DataError(path, f"answer must be an index 0-3 (got {r['answer']!r})", row=i, field="answer") from None
            if not 0 <= ans <= 3:
                raise DataError(path, f"answer must be an index 0-3 (got {ans})", row=i, field="answer")
            if not (r["question"] or "").strip():
                raise DataError(path, "empty question", row=i, field="question")
            rows.append({"question": r["question"], "choices": [r[f"choice{j}"] or "" for j in range(4)],
                         "answer": ans})
    return rows


def _hub_rows(subject: str, split: str) -> list[dict[str, Any]]:
    from bench.data import load_hub_split

    return [{"question": r["question"], "choices": list(r["choices"]), "answer": int(r["answer"])}
            for r in load_hub_split(HUB_REPO, subject, split)]


def format_question(row: dict[str, Any], answer: bool) -> str:
    text = row["question"].strip() + "".join(f"\n{x}. {c}" for x, c in zip(LETTERS, row["choices"])) + "\nAnswer:"
    return text + (f" {LETTERS[row['answer']]}\n\n" if answer else "")


def prompt(subject: str, shots: Sequence[dict[str, Any]], row: dict[str, Any]) -> str:
    head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    return head + "".join(format_question(s, True) for s in shots) + format_question(row, False)


def resolve_dir(data_dir: str | Path | None) -> Path | None:
    """``data_dir`` (the ``mmlu`` folder or its parent), else ``$BENCH_MMLU_DIR``, else ``None`` (hub)."""
    d = data_dir or os.environ.get(DATA_ENV)
    if not d:
        return None
    p = Path(d)
    if (p / "mmlu" / "test").is_dir():
        p = p / "mmlu"
    if not (p / "test").is_dir():
        raise BenchError(f"mmlu: {p} has no test/ folder (expected dev/<subject>_dev.csv and test/<subject>_test.csv)")
    return p


def mmlu_items(data_dir: str | Path | None = None, subjects: Sequence[str] | str | None = None,
               shots: int = 5, per_subject: int | None = None) -> tuple[list[Item], dict[str, str]]:
    """MMLU test questions as items ``"mmlu/<subject>/<row>"`` and the files read (path -> sha256).

    ``shots`` in 0..5 (the dev pool has 5 per subject); ``per_subject`` caps the test rows
    per subject (first N). Item meta: ``choices`` (" A".." D"), ``answer_index``, ``subject``.
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= 5:
        raise BenchError(f"mmlu: shots must be an integer 0-5 (got {shots!r})")
    if per_subject is not None and (isinstance(per_subject, bool) or not isinstance(per_subject, int) or per_subject < 1):
        raise BenchError(f"mmlu: per_subject must be a positive integer (got {per_subject!r})")
    from bench.data import sha256_file

    folder = resolve_dir(data_dir)
    items: list[Item] = []
    files: dict[str, str] = {}
    for subject in check_subjects(subjects):
        if folder is None:
            dev, test = (_hub_rows(subject, "dev") if shots else []), _hub_rows(subject, "test")
        else:
            paths = {"dev": folder / "dev" / f"{subject}_dev.csv", "test": folder / "test" / f"{subject}_test.csv"}
            dev = read_csv(paths["dev"]) if shots else []
            test = read_csv(paths["test"])
            for k in (("dev", "test") if shots else ("test",)):
                files[str(paths[k])] = sha256_file(paths[k])
        if len(dev) < shots:
            raise BenchError(f"mmlu: subject '{subject}' has {len(dev)} dev rows, fewer than shots={shots}")
        for i, row in enumerate(test[:per_subject] if per_subject else test):
            items.append(Item(f"mmlu/{subject}/{i}", prompt(subject, dev[:shots], row), LETTERS[row["answer"]],
                              meta={"choices": CHOICES, "answer_index": row["answer"], "subject": subject}))
    return items, files


def mmlu_eval_set(data_dir: str | Path | None = None, subjects: Sequence[str] | str | None = None,
                  shots: int = 5, per_subject: int | None = None, name: str = "mmlu",
                  average: str = "micro") -> tuple[EvalSet, dict[str, str]]:
    """An ``EvalSet`` (format ``raw``, role retain) scored with ``choice_accuracy``, and its files."""
    items, files = mmlu_items(data_dir, subjects, shots, per_subject)
    src = str(resolve_dir(data_dir) or HUB_REPO)
    es = EvalSet(name, items, [MetricSpec("choice_accuracy", {"average": average})], role="retain",
                 max_new_tokens=1, source=f"{src} ({shots}-shot)", format="raw")
    return es, files


def evaluate_mmlu(model: str, data_dir: str | Path | None = None, subjects: Sequence[str] | str | None = None,
                  shots: int = 5, per_subject: int | None = None, backend: str = "hf",
                  cache: bool = True) -> dict[str, Any]:
    """MMLU accuracy of ``model`` (alias, directory or hub id) as it is: overall (micro),
    per subject, and the counts. The requests go through the suite's answering layer
    (request cache included), like a run's."""
    import time

    from bench.backends.cache import AnsweringLayer
    from bench.evaluate import answer, plan, score
    from bench.models import load_bundle, resolve
    from bench.paths import cache_dir
    from bench.registry import BACKENDS

    es, files = mmlu_eval_set(data_dir, subjects, shots, per_subject)
    path, _ = resolve(model)
    bundle = load_bundle(path, name=model)
    t0 = time.time()
    p = plan(bundle, [es])
    layer = AnsweringLayer(BACKENDS.get(backend)(bundle), bundle.fingerprint(),
                           cache_dir() / "requests" if cache else None)
    try:
        responses = answer(p, layer)
    finally:
        layer.close()
    answered = time.time() - t0
    sets, _ = score(p, responses)
    res = sets[es.name]
    by: dict[str, list[float]] = {}
    for it, v in zip(es.items, res.per_item["choice_accuracy"]):
        by.setdefault(it.meta["subject"], []).append(float(v))
    return {"accuracy": res.aggregates["choice_accuracy"], "questions": len(es.items), "shots": shots,
            "per_subject": {s: sum(v) / len(v) for s, v in by.items()}, "answer_s": round(answered, 2),
            "source": es.source, "files": files}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.mmlu --model M [--subjects a,b,c] [--shots 5] [--per-subject N] [--data-dir D]``."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m bench.mmlu", description="MMLU accuracy by option log-likelihood")
    ap.add_argument("--model", required=True, help="alias, model directory or hub id")
    ap.add_argument("--data-dir", help=f"folder with dev/ and test/ CSVs (default ${DATA_ENV}, else the hub)")
    ap.add_argument("--subjects", default="all", help="comma-separated subjects (default all 57)")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--per-subject", type=int, help="first N test questions per subject")
    ap.add_argument("--backend", default="hf")
    args = ap.parse_args(argv)
    try:
        out = evaluate_mmlu(args.model, args.data_dir, args.subjects, args.shots, args.per_subject, args.backend)
    except BenchError as e:
        print(f"error: {e}")
        return 2
    out.pop("files")
    print(json.dumps(out, indent=2))
    print(f"MMLU {args.shots}-shot accuracy: {out['accuracy']:.4f} over {out['questions']} questions")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
