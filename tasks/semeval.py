"""SemEval-2025 Task 4 (LUME, Ramakrishna et al. 2025): unlearning creative documents
(Task1), synthetic PII biographies (Task2) and real biographies (Task3), scored as the
organisers' ``evaluate_generations.py``.

Data: a local folder holding ``forget.jsonl`` and ``retain.jsonl`` (rows ``{id, input,
output, task}``; JSON Lines or one JSON array), given as ``--data-dir`` (the ``semeval25``
folder or its parent) or ``$BENCH_DATA_DIR``; without either, the organisers' hub dataset
:data:`HUB_REPO` (gated: ``forget_train`` + ``forget_validation`` and the same for retain,
merged as in ``../shared/data``). ``id[:-1]`` ending ``sc`` = sentence completion, ``qa`` =
question answering; any other id is an error naming its row.

Tasks: ``semeval25-task1`` / ``-task2`` / ``-task3`` keep the rows of one subtask,
``semeval25`` all three. Training splits (``bench.items.Split``, format ``"raw"``: ``input``
then ``output`` verbatim, the answer tokens labelled): forget, retain, full = both.

Eval sets (format ``raw``: BOS + ``input``, no template; greedy, 256 new tokens):

* ``forget`` (role forget) / ``retain`` (retain): ``semeval_regurgitation`` (ROUGE-L recall,
  stemmed, on ``sc`` items) and ``semeval_knowledge`` (exact match, ``strip().lower()``, on
  ``qa`` items). ``--limit N`` keeps the first N rows of every (subtask, sc/qa) group of a
  set, so each of the task aggregate's numbers stays defined.
* ``mia_member`` / ``mia_nonmember`` (only with ``--task-set member=PATH nonmember=PATH``:
  the organisers' ``member.jsonl`` / ``nonmember.jsonl``, a ``document`` field per row):
  format ``document``, ``mia_loss`` (−mean NLL over every token after BOS).
* ``mmlu``: :mod:`bench.mmlu` (lm-eval's prompt, ``mmlu_shots`` shots, option
  log-likelihood accuracy) from ``mmlu_dir``, else the ``mmlu`` folder beside the data,
  else the hub (``cais/mmlu``); ``mmlu_subjects`` (comma list or ``all``) and
  ``mmlu_per_subject`` (0 = every question) keep CPU runs short; ``--limit N`` keeps the
  first N questions of the set (as for any set: a quick look, not an MMLU score).

Option ``max_train`` (default 0 = all) keeps the first N rows of every (subtask, kind) group
of the *training* splits, for quick offline runs (the tiny model); recorded and hashed.

Derived nodes: ``semeval_task_aggregate`` (``semeval25``: harmonic mean of the 12
per-subtask numbers, forget as ``1 − x``) or ``semeval_subtask_aggregate`` (one subtask:
its 4 numbers, what the organisers' script gives on that subtask's data);
``mia_loss_auc`` and ``semeval_mia_score = 1 − 2·|AUC − 0.5|`` (missing with a note
without member files); ``semeval_final`` = mean of aggregate, MIA score and MMLU —
``None`` under ``mmlu_gate`` (0.371, the 7B track's) with a warning note, the ungated
mean as ``semeval_final_ungated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.data import (
    TEXT,
    data_hint,
    load_hub_split,
    read_records,
    records_sha256,
    require,
    resolve_data_dir,
    sha256_file,
)
from bench.errors import BenchError, DataError
from bench.graph import Derived, Ref
from bench.items import EvalSet, Item, MetricSpec, Split, TaskData
from bench.metrics.mia import benchmark_specs
from bench.registry import TASKS
from bench.task import Task

HUB_REPO = "llmunlearningsemeval2025organization/semeval25-unlearning-dataset-public"
DATA_SUBDIR = "semeval25"
MIA_HINT = ("needs the organisers' member / non-member files, not in the public data: give them as "
            "--task-set member=PATH --task-set nonmember=PATH")
DATA_HINT = ("use the organisers' forget / retain files unchanged (JSON Lines {id, input, output, task}: "
             "data/ of amazon-science/lume-llm-unlearning, or the gated hub dataset) as --data-dir/semeval25, "
             "and MMLU's CSV files as --data-dir/mmlu")
SPLITS = ("forget", "retain")
SUBTASKS = ("Task1", "Task2", "Task3")
KINDS = ("sc", "qa")
MAX_NEW_TOKENS = 256
ROW_FIELDS = {"id": TEXT, "input": TEXT, "output": TEXT, "task": TEXT}
SET_METRICS = (MetricSpec("semeval_regurgitation"), MetricSpec("semeval_knowledge"))
MMLU_GATE = 0.371


def row_kind(row_id: str) -> str | None:
    """``"sc"`` / ``"qa"`` by the organisers' rule (``id[:-1]`` suffix), else ``None``."""
    head = row_id[:-1]
    return next((k for k in KINDS if head.endswith(k)), None)


def check_subtask(name: str) -> str:
    """``name`` if it is a SemEval subtask, else a one-line BenchError listing the three."""
    if name not in SUBTASKS:
        raise BenchError(f"unknown SemEval-2025 Task 4 subtask {name!r}: expected one of "
                         "Task1 (semeval25-task1), Task2 (semeval25-task2), Task3 (semeval25-task3)")
    return name


def check_rows(rows: Sequence[dict], where: Any) -> None:
    """Every row has ``id, input, output, task``, a known subtask and an sc/qa id."""
    for i, r in enumerate(rows):
        require(r, ROW_FIELDS, where, i)
        if r["task"] not in SUBTASKS:
            raise DataError(where, f"unknown subtask {r['task']!r} (expected one of {', '.join(SUBTASKS)})", i, "task")
        if row_kind(r["id"]) is None:
            raise DataError(where, f"id {r['id']!r} names no item type: id[:-1] must end in 'sc' "
                            "(sentence completion) or 'qa' (question answering)", i, "id")


def limit_groups(rows: Sequence[dict], limit: int | None) -> list[tuple[int, dict]]:
    """``(row number, row)`` for the first ``limit`` rows of every (subtask, kind) group,
    in file order (all rows for ``None``)."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for i, r in enumerate(rows):
        g = (r["task"], row_kind(r["id"]) or "")
        seen[g] = seen.get(g, 0) + 1
        if limit is None or seen[g] <= limit:
            out.append((i, r))
    return out


def documents(path: Path, field: str = "document") -> list[str]:
    """The ``document`` texts of an MIA file (JSON Lines or one array)."""
    rows = read_records(path)
    if not rows:
        raise DataError(path, "no rows (an empty file or an empty array)")
    for i, r in enumerate(rows):
        require(r, {field: TEXT}, path, i)
    return [r[field] for r in rows]


class SemEvalTask(Task):
    """SemEval-2025 Task 4 on the subtasks in :attr:`subtasks` (module docstring)."""

    family = "semeval25"
    reference_key = "retain"
    subtasks: ClassVar[tuple[str, ...]] = SUBTASKS
    frontier = ("forget_semeval_regurgitation", "retain_semeval_regurgitation")
    efficacy_higher_is_better = False

    def __init__(self, member: str = "", nonmember: str = "", mmlu_subjects: str = "all",
                 mmlu_per_subject: int = 0, mmlu_shots: int = 5, mmlu_dir: str = "",
                 mmlu_gate: float = MMLU_GATE, max_train: int = 0) -> None:
        from bench.mmlu import check_subjects

        if bool(member) != bool(nonmember):
            raise BenchError(f"task '{self.name}': give both member=PATH and nonmember=PATH "
                             "(the organisers' member.jsonl / nonmember.jsonl) or neither")
        for label, p in (("member", member), ("nonmember", nonmember)):
            if p and not Path(p).expanduser().is_file():
                raise BenchError(f"task '{self.name}': {label}={p!r}: file not found")
        check_subjects(mmlu_subjects)
        if mmlu_per_subject < 0:
            raise BenchError(f"task '{self.name}': mmlu_per_subject must be >= 0 (0 = every question)")
        if not 0 <= mmlu_shots <= 5:
            raise BenchError(f"task '{self.name}': mmlu_shots must be 0-5 (the dev pool has 5 per subject)")
        self.member, self.nonmember = member, nonmember
        self.mmlu_subjects, self.mmlu_per_subject, self.mmlu_shots = mmlu_subjects, mmlu_per_subject, mmlu_shots
        if max_train < 0:
            raise BenchError(f"task '{self.name}': max_train must be >= 0 (0 = every row)")
        self.mmlu_dir, self.mmlu_gate = mmlu_dir, mmlu_gate
        self.max_train = max_train

    # --- data ---------------------------------------------------------------------------

    def rows(self, data_dir: Path | str | None, files: dict[str, str]) -> tuple[dict[str, list[dict]], dict[str, Any], str]:
        """``({split: rows of this task's subtasks}, {split: where}, source)``."""
        envs = tuple(dict.fromkeys((self.data_env, "BENCH_DATA_DIR")))
        folder = resolve_data_dir(data_dir, DATA_SUBDIR, "forget.jsonl", envs)
        out: dict[str, list[dict]] = {}
        where: dict[str, Any] = {}
        for split in SPLITS:
            if folder is None:
                rows = []
                for part in ("train", "validation"):
                    got = load_hub_split(HUB_REPO, None, f"{split}_{part}")
                    files[f"hub:{HUB_REPO}/{split}_{part}"] = records_sha256(got)
                    rows += got
                where[split] = f"hub:{HUB_REPO}/{split}"
            else:
                p = folder / f"{split}.jsonl"
                if not p.is_file() and (folder / f"{split}.json").is_file():
                    p = folder / f"{split}.json"
                rows = read_records(p)
                files[f"{folder.name}/{p.name}"] = sha256_file(p)
                where[split] = p
            if not rows:
                raise DataError(where[split], "no rows (an empty file or an empty array)")
            check_rows(rows, where[split])
            kept = [r for r in rows if r["task"] in self.subtasks]
            if not kept:
                raise DataError(where[split], f"no rows of {', '.join(self.subtasks)}")
            out[split] = kept
        return out, where, str(folder) if folder is not None else f"hub:{HUB_REPO}"

    def mmlu_root(self, data_dir: Path | str | None) -> Path | None:
        if self.mmlu_dir:
            return Path(self.mmlu_dir).expanduser()
        if data_dir is not None:
            for cand in (Path(data_dir), Path(data_dir).parent):
                if (cand / "mmlu" / "test").is_dir() or (cand / "test").is_dir() and cand.name == "mmlu":
                    return cand
        return None

    @data_hint(DATA_HINT)
    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        from bench.mmlu import mmlu_eval_set
        from bench.tasks.tofu import check_limit

        check_limit(limit)
        files: dict[str, str] = {}
        notes: dict[str, str] = {}
        rows, where, source = self.rows(data_dir, files)
        train = {s: Split([Item(f"{s}/{i}", r["input"], r["output"], meta={"id": r["id"], "task": r["task"]})
                           for i, r in limit_groups(rows[s], self.max_train or None)], format="raw")
                 for s in SPLITS}
        if self.max_train:
            notes["max_train"] = (f"training splits cut to the first {self.max_train} rows of each "
                                  "(subtask, sc/qa) group (task option max_train)")
        eval_sets = []
        for split in SPLITS:
            items = [Item(f"{split}/{i}", r["input"], r["output"], meta={"id": r["id"], "task": r["task"]})
                     for i, r in limit_groups(rows[split], limit)]
            eval_sets.append(EvalSet(split, items, list(SET_METRICS), role=split, max_new_tokens=MAX_NEW_TOKENS,
                                     source=str(where[split]), format="raw"))
        if self.member:
            for name, path in (("mia_member", self.member), ("mia_nonmember", self.nonmember)):
                p = Path(path).expanduser()
                docs = documents(p)
                files[str(p)] = sha256_file(p)
                keep = docs if limit is None else docs[:limit]
                eval_sets.append(EvalSet(name, [Item(f"{name}/{i}", "", d) for i, d in enumerate(keep)],
                                         benchmark_specs("semeval"), role="forget" if name == "mia_member" else "holdout",
                                         max_new_tokens=1, source=str(p), format="document"))
        else:
            notes["mia"] = f"MIA score not computed: {MIA_HINT}"
        mmlu_set, mmlu_files = mmlu_eval_set(self.mmlu_root(data_dir), self.mmlu_subjects, self.mmlu_shots,
                                             self.mmlu_per_subject or None)
        if limit is not None:
            mmlu_set.items = mmlu_set.items[:limit]
        eval_sets.append(mmlu_set)
        files.update(mmlu_files)
        return TaskData(forget=train["forget"], retain=train["retain"],
                        full=Split(list(train["forget"]) + list(train["retain"]), format="raw"),
                        eval_sets=eval_sets, files=files, extras={"data_notes": notes}, source=source,
                        derived=self.derived())

    # --- scores -------------------------------------------------------------------------

    @property
    def aggregate_key(self) -> str:
        return "semeval_task_aggregate" if self.subtasks == SUBTASKS else "semeval_subtask_aggregate"

    def derived(self) -> list[Derived]:
        inputs = {f"{s}_{m}": Ref(f"{s}/semeval_{m}") for s in SPLITS for m in ("regurgitation", "knowledge")}
        if self.subtasks == SUBTASKS:
            nodes = [Derived("semeval_task_aggregate", inputs)]
        else:
            nodes = [Derived("semeval_subtask_aggregate", inputs, options={"subtasks": list(self.subtasks)})]
        from dataclasses import replace

        from bench.metrics.mia import auc_nodes

        hint = "" if self.member else MIA_HINT
        nodes += [replace(n, missing_hint=hint) if n.name == "mia_auc" else n  # later nodes quote its note
                  for n in auc_nodes("mia_member", "mia_nonmember", ["mia_loss"], semeval=True)]
        nodes += [
            Derived("semeval_final", {"task_aggregate": Ref(f"@{self.aggregate_key}"),
                                      "mia_score": Ref("@semeval_mia_score"),
                                      "mmlu": Ref("mmlu/choice_accuracy", per_item=False)},
                    options={"mmlu_gate": self.mmlu_gate}),
        ]
        if not self.member:  # no final score: the gate (and its warning) on its own
            nodes.append(Derived("semeval_mmlu_gate", {"mmlu": Ref("mmlu/choice_accuracy", per_item=False)},
                                 options={"mmlu_gate": self.mmlu_gate}, key="semeval_mmlu_gate_passed"))
        return nodes


HEAD_TAIL = ("semeval_mia_score", "mia_loss_auc", "mmlu_choice_accuracy", "semeval_final_ungated",
             "forget_semeval_regurgitation", "forget_semeval_knowledge", "retain_semeval_regurgitation",
             "retain_semeval_knowledge")


@TASKS.register("semeval25")
class SemEval25(SemEvalTask):
    name = "semeval25"
    description = "SemEval-2025 Task 4 (LUME), all three subtasks: regurgitation, knowledge, MIA, MMLU, final"
    subtasks = SUBTASKS
    headline = ("semeval_final", "semeval_task_aggregate", *HEAD_TAIL)
    sizes = ("train/eval: forget 2732 (Task1 486, Task2 1500, Task3 746), retain 2734 (Task1 492, "
             "Task2 1500, Task3 742); mmlu 14042 (57 subjects); MIA: the given member/nonmember files")


def _subtask(k: int, what: str, forget: str, retain: str) -> type[SemEvalTask]:
    name = f"semeval25-task{k}"

    class _One(SemEvalTask):
        pass

    _One.name = name
    _One.description = f"SemEval-2025 Task 4, subtask {k} ({what}): regurgitation, knowledge, MIA, MMLU, final"
    _One.subtasks = (check_subtask(f"Task{k}"),)
    _One.headline = ("semeval_final", "semeval_subtask_aggregate", *HEAD_TAIL)
    _One.sizes = f"train/eval: forget {forget}, retain {retain}; mmlu 14042 (57 subjects); MIA: the given files"
    _One.__name__ = _One.__qualname__ = f"SemEval25Task{k}"
    return TASKS.register(name)(_One)


SemEval25Task1 = _subtask(1, "synthetic creative documents", "486 (243 sc, 243 qa)", "492 (246 sc, 246 qa)")
SemEval25Task2 = _subtask(2, "synthetic biographies with PII", "1500 (250 sc, 1250 qa)", "1500 (250 sc, 1250 qa)")
SemEval25Task3 = _subtask(3, "real biographies", "746 (373 sc, 373 qa)", "742 (371 sc, 371 qa)")
