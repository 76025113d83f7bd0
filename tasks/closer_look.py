"""Closer-look (Yuan et al. 2025, seed 004; sail-sg/closer-look-LLM-unlearning) tasks:
continual TOFU unlearning and the real-world task, scored with closer-look's six metrics
and its MU / FE aggregates.

Data: closer-look's own files, JSON Lines (``forget.py``, ``eval.py``,
``real_world_eval.py``; the layout of ``data/tofu`` and ``data/real_world`` in its
repository). They are not on the Hugging Face hub: pass ``--data-dir`` (the data root that
holds ``tofu_continual/`` and ``real_world/``, or the folder itself) or set
``$BENCH_DATA_DIR``.

**Continual TOFU** (``tofu-continual-forget01/05/10``): ``forgetXX.json`` carries
``task_id`` "1".."10" (forget01 10 × 40 items, forget05 10 × 200, forget10 9 × 400;
task 1 = TOFU's standard split). Step ``i`` (of ``task_list``, default every task in
order) unlearns the items of task ``i``, starting from the previous step's model; its
retain set is ``retain90/50/10`` (closer-look: ``retain{100 − min(10·XX, 90)}``) plus the
forget items of every task not yet run (closer-look's ``forget_retain_data``). Every step
is evaluated: ``forget`` = ``forgetXX_perturbed`` rows of task ``i``; ``retain`` =
``retain_perturbed``; ``real_authors`` / ``world_facts`` = ``*_perturbed`` (their
``original_answer`` is the reference of CS and ES, as closer-look's ``get_all_evals``).
closer-look evaluates the first ``ds_size`` = 300 items of each set (task option
``ds_size``; 0 = all); ``--limit`` cuts further. A reference-based method's reference is
the previous step's model (closer-look's default ``fix_ref_model=false``) or the initial
one: ``--step-reference``.

**Real world** (``realworld``): 20 real people × 20 questions. Training: ``forget.json``
and ``neighbor.json`` with the ``answer`` field (the original model's own output, which
closer-look trains on). Eval: ``forget_perturbed`` and ``neighbor_perturbed`` (20 other
people) with ``golden_answer`` as the answer of R, P and ES, and ``answer`` (kept as
``meta["model_answer"]``) as the reference of CS (SPEC: closer-look metrics). ES premise is
the generation on both sets (closer-look's ``tofu=False``). Option ``max_train`` (default 0 =
all) keeps the first N rows of ``forget.json`` and ``neighbor.json`` for training (recorded as a
data note; the eval sets stay whole): a quick ``tiny`` model, whose preparation fine-tunes on
the training rows' long answers.

Metrics per set (all "higher = performs the task"): probability P (normalised over the
options on real authors / world facts), ROUGE-L recall R (stemmed), truth ratio TR
(forget ``mean(min(R, 1/R))``, turned into closer-look's ``1 − mean(min)`` inside FE;
retain-style ``mean(max(0, 1 − 1/R))`` elsewhere), token entropy TE, cosine similarity
CS, entailment ES. Derived: ``closer_look_mu`` (harmonic mean of the six on every
non-forget set: 18 numbers on TOFU, 6 on real world), ``closer_look_mu_retain`` (TOFU: the
retain set's six, closer-look's "Model Utility Retain"), ``closer_look_fe``
(``1 − mean(R, P, TR, CS, ES)`` on the forget set). Continual TOFU also records TOFU's
``model_utility`` and ``forget_quality`` (the latter needs the retain-only reference).

Generation: greedy, 200 new tokens. closer-look caps prompt + output at 200 tokens in
total (``max_length=200``); the suite's budget is per generation, so an output that rambles
past ``200 − prompt`` tokens is longer here (a known difference). CS and ES need their
scorer models (``embedding_model``, ``nli_model`` task options: the papers' hub ids by
default, or local directories); without them those values, and MU / FE, are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.data import STR_LIST, TEXT, SplitSource, data_hint, require, resolve_data_dir
from bench.errors import BenchError, DataError
from bench.graph import Derived, Ref
from bench.items import EvalSet, Item, MetricSpec, Step, TaskData
from bench.registry import TASKS
from bench.scorers import EMBEDDING_MODEL, NLI_MODEL
from bench.task import Task

from .tofu import check_limit, tofu_derived

MAX_NEW_TOKENS = 200
DS_SIZE = 300  # closer-look's config/tofu.yaml ds_size
CL_METRICS = ("probability", "rouge_l", "truth_ratio", "token_entropy", "cosine_similarity", "entailment")
FE_METRICS = ("rouge_l", "probability", "truth_ratio", "cosine_similarity", "entailment")  # TE excluded
TOFU_UTILITY_SETS = ("retain", "real_authors", "world_facts")
CONTINUAL_SUBDIR = "tofu_continual"
REALWORLD_SUBDIR = "real_world"
CONTINUAL_HINT = ("use an unchanged copy of data/tofu of sail-sg/closer-look-LLM-unlearning (JSON Lines, "
                  "forgetXX with task_id, retainXX, the *_perturbed sets) as --data-dir/tofu_continual")
REALWORLD_HINT = ("use an unchanged copy of data/real_world of sail-sg/closer-look-LLM-unlearning (forget, "
                  "neighbor and their _perturbed sets) as --data-dir/real_world")
NOT_ON_HUB = ("closer-look's {what} is not on the Hugging Face hub: download data/{folder} of "
              "sail-sg/closer-look-LLM-unlearning and pass --data-dir (its parent or the folder itself)")

QA = {"question": TEXT, "answer": TEXT}
PERTURBED = {**QA, "paraphrased_answer": TEXT, "perturbed_answer": STR_LIST}
OPTIONS = {**QA, "perturbed_answer": STR_LIST}


def closer_look_metrics(kind: str, *, embedding_model: str, nli_model: str, reference_field: str = "answer",
                        cs_field: str | None = None, premise: str | None = None) -> list[MetricSpec]:
    """The six closer-look metrics of one set. ``kind``: "forget" | "retain" | "options"
    (real authors / world facts: normalised probability, TR against the answer itself)."""
    cs_field = cs_field or reference_field
    if premise is None:
        premise = "generation" if kind == "forget" else "reference"
    tr = {"mode": "forget" if kind == "forget" else "retain",
          "paraphrase_field": "answer" if kind == "options" else "paraphrased_answer"}
    return [
        MetricSpec("probability", {"normalized": kind == "options"}),
        MetricSpec("rouge_l"),
        MetricSpec("truth_ratio", tr),
        MetricSpec("token_entropy"),
        MetricSpec("cosine_similarity", {"model": embedding_model, "reference_field": cs_field}),
        MetricSpec("entailment", {"model": nli_model, "premise": premise, "reference_field": reference_field}),
    ]


def closer_look_nodes(utility_sets: Sequence[str], forget_set: str = "forget",
                      retain_set: str | None = None) -> list[Derived]:
    """MU over ``utility_sets`` × the six metrics, FE over the forget set's five, and (when
    ``retain_set`` is given) MU over that set alone as ``closer_look_mu_retain``."""
    nodes = [Derived("closer_look_mu", {"values": {f"{s}_{m}": Ref(f"{s}/{m}", per_item=False)
                                                   for s in utility_sets for m in CL_METRICS}})]
    if retain_set is not None:
        nodes.append(Derived("closer_look_mu", {"values": {f"{retain_set}_{m}": Ref(f"{retain_set}/{m}", per_item=False)
                                                           for m in CL_METRICS}}, key="closer_look_mu_retain"))
    nodes.append(Derived("closer_look_fe", {"values": {m: Ref(f"{forget_set}/{m}", per_item=False)
                                                       for m in FE_METRICS}}))
    return nodes


def _row_items(rows: Sequence[dict], indices: Sequence[int], prefix: str, where: Any, fields: dict[str, str],
               *, answer_field: str = "answer", paraphrase: str | None = None, options: bool = False,
               keep_as: dict[str, str] | None = None) -> list[Item]:
    """Rows ``indices`` of a file as items ``"<prefix>/<row>"`` (row = index in the file)."""
    out = []
    for i in indices:
        r = rows[i]
        require(r, fields, where, i)
        meta = {k: v for k, v in r.items() if k not in fields}
        for src, dst in (keep_as or {}).items():
            meta[dst] = r[src]
        out.append(Item(f"{prefix}/{i}", r["question"], r[answer_field],
                        paraphrased_answer=r[paraphrase] if paraphrase else None,
                        perturbed_answers=tuple(r["perturbed_answer"]) if "perturbed_answer" in fields else (),
                        meta=meta))
    return out


def _head(indices: Sequence[int], ds_size: int, limit: int | None) -> list[int]:
    out = list(indices)
    if ds_size:
        out = out[:ds_size]
    return out if limit is None else out[:limit]


def _check_ds_size(task: str, ds_size: int) -> int:
    if isinstance(ds_size, bool) or not isinstance(ds_size, int) or ds_size < 0:
        raise BenchError(f"task '{task}': ds_size must be a non-negative integer (0 = every item), got {ds_size!r}")
    return ds_size


def _source(task: Task, data_dir: Path | str | None, subdir: str, marker: str, what: str) -> SplitSource:
    envs = tuple(dict.fromkeys((task.data_env, "BENCH_DATA_DIR")))
    folder = resolve_data_dir(data_dir, subdir, marker, envs)
    if folder is None:
        raise BenchError(f"task '{task.name}': " + NOT_ON_HUB.format(what=what, folder=subdir.replace("tofu_continual", "tofu")))
    return SplitSource(folder, "")


def task_ids(rows: Sequence[dict], where: Any) -> list[int]:
    """The ``task_id`` of every row, as integers (closer-look stores "1".."10")."""
    out = []
    for i, r in enumerate(rows):
        if "task_id" not in r:
            raise DataError(where, "missing field (closer-look's continual split needs task_id on every row)", i, "task_id")
        try:
            out.append(int(r["task_id"]))
        except (TypeError, ValueError):
            raise DataError(where, f"task_id must be an integer, got {r['task_id']!r}", i, "task_id") from None
    return out


class ContinualTofuTask(Task):
    """Continual TOFU unlearning on closer-look's ``task_id`` splits (module docstring)."""

    family = "tofu-continual"
    forget_split: ClassVar[str] = ""
    retain_split: ClassVar[str] = ""
    n_tasks: ClassVar[int] = 0
    headline = ("closer_look_mu", "closer_look_fe", "closer_look_mu_retain", "model_utility", "forget_quality",
                "forget_rouge_l", "forget_probability", "forget_entailment", "retain_rouge_l")
    frontier = ("closer_look_fe", "closer_look_mu")
    efficacy_higher_is_better = True

    def __init__(self, task_list: str = "", ds_size: int = DS_SIZE, embedding_model: str = EMBEDDING_MODEL,
                 nli_model: str = NLI_MODEL) -> None:
        self.task_list = task_list
        self.ds_size = _check_ds_size(self.name, ds_size)
        self.embedding_model = embedding_model
        self.nli_model = nli_model
        self.order()  # checked before any data is read

    def order(self) -> list[int]:
        """The task ids in unlearning order (closer-look's TASK_LIST; default 1..n)."""
        if not self.task_list.strip():
            return list(range(1, self.n_tasks + 1))
        out = []
        for part in self.task_list.split(","):
            try:
                tid = int(part.strip())
            except ValueError:
                raise BenchError(f"task '{self.name}': task_list must be comma-separated task ids, got {part.strip()!r}") from None
            if not 1 <= tid <= self.n_tasks:
                raise BenchError(f"task '{self.name}': task id {tid} does not exist (1..{self.n_tasks})")
            if tid in out:
                raise BenchError(f"task '{self.name}': task id {tid} is listed twice in task_list")
            out.append(tid)
        return out

    @data_hint(CONTINUAL_HINT)
    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        """Read the continual splits; one :class:`Step` per task id (module docstring).
        ``limit`` (and ``ds_size``) cut the eval sets only."""
        check_limit(limit)
        src = _source(self, data_dir, CONTINUAL_SUBDIR, f"{self.forget_split}.json", "continual TOFU split")
        where = src.where
        fs, fps = self.forget_split, f"{self.forget_split}_perturbed"
        forget_rows, fp_rows = src.records(fs), src.records(fps)
        retain_rows = src.records(self.retain_split)
        if len(fp_rows) != len(forget_rows):
            raise DataError(where(fps), f"has {len(fp_rows)} rows but {fs}.json has {len(forget_rows)}; "
                            "the perturbed file must list the same items in the same order")
        tids, ptids = task_ids(forget_rows, where(fs)), task_ids(fp_rows, where(fps))
        for i, (a, b) in enumerate(zip(forget_rows, fp_rows)):
            if tids[i] != ptids[i] or a.get("question") != b.get("question"):
                raise DataError(where(fps), f"row {i} is not the item of {fs}.json row {i} (question or task_id differ)")
        present = sorted(set(tids))
        order = self.order()
        missing = [t for t in order if t not in present]
        if missing:
            raise DataError(where(fs), f"has no item with task_id {missing[0]} (task ids present: "
                            f"{', '.join(map(str, present))}); use a copy of closer-look's data/tofu")
        forget_all = _row_items(forget_rows, range(len(forget_rows)), fs, where(fs), QA)
        retain = _row_items(retain_rows, range(len(retain_rows)), self.retain_split, where(self.retain_split), QA)
        names = {"retain": "retain_perturbed", "real_authors": "real_authors_perturbed",
                 "world_facts": "world_facts_perturbed"}
        rows = {k: src.records(v) for k, v in names.items()}
        cl = {"embedding_model": self.embedding_model, "nli_model": self.nli_model}
        fixed = [
            EvalSet("retain", _row_items(rows["retain"], _head(range(len(rows["retain"])), self.ds_size, limit),
                                         "retain", where(names["retain"]), PERTURBED, paraphrase="paraphrased_answer"),
                    closer_look_metrics("retain", **cl), role="retain", max_new_tokens=MAX_NEW_TOKENS,
                    source=src.key(names["retain"])),
        ]
        for name in ("real_authors", "world_facts"):
            fields = {**OPTIONS, "original_answer": TEXT}
            items = _row_items(rows[name], _head(range(len(rows[name])), self.ds_size, limit), name,
                               where(names[name]), fields, options=True, keep_as={"original_answer": "original_answer"})
            fixed.append(EvalSet(name, items, closer_look_metrics("options", reference_field="original_answer", **cl),
                                 role="retain", max_new_tokens=MAX_NEW_TOKENS, source=src.key(names[name])))
        # the tiny alias's general knowledge: every real-authors / world-facts row (not cut by
        # ds_size or --limit, so the prepared models never depend on them)
        pretrain = [it for name in ("real_authors", "world_facts")
                    for it in _row_items(rows[name], range(len(rows[name])), f"pretrain/{name}", where(names[name]),
                                         {**OPTIONS, "original_answer": TEXT}, options=True)]
        steps = []
        for k, tid in enumerate(order):
            done = set(order[:k + 1])
            mine = [it for it, t in zip(forget_all, tids) if t == tid]
            later = [it for it, t in zip(forget_all, tids) if t not in done]
            ev_idx = _head([i for i, t in enumerate(ptids) if t == tid], self.ds_size, limit)
            forget_eval = EvalSet("forget", _row_items(fp_rows, ev_idx, "forget", where(fps), PERTURBED,
                                                       paraphrase="paraphrased_answer"),
                                  closer_look_metrics("forget", **cl), role="forget", max_new_tokens=MAX_NEW_TOKENS,
                                  source=f"{src.key(fps)} (task_id {tid})")
            steps.append(Step(f"task{tid}", mine, retain + later, [forget_eval, *fixed]))
        return TaskData(
            forget=forget_all, retain=retain, full=retain + forget_all, eval_sets=list(steps[0].eval_sets),
            files=dict(src.files), source=src.source, steps=steps, pretrain=pretrain,
            derived=closer_look_nodes(TOFU_UTILITY_SETS, retain_set="retain") + tofu_derived(),
        )


def _sizes(n: int, per: int, retain: int) -> str:
    return (f"{n} steps x forget {per} (step i retain: {retain} + {per} x (steps after i)), full {n * per + retain}; "
            f"eval per step: forget {min(per, DS_SIZE)}, retain 300, real_authors 100, world_facts 117 (ds_size 300)")


@TASKS.register("tofu-continual-forget01")
class ContinualForget01(ContinualTofuTask):
    name = "tofu-continual-forget01"
    description = "Continual TOFU (closer-look): unlearn forget01 in 10 steps of 40 QA, every step evaluated"
    forget_split = "forget01"
    retain_split = "retain90"
    reference_key = "retain90"
    n_tasks = 10
    sizes = _sizes(10, 40, 3600)


@TASKS.register("tofu-continual-forget05")
class ContinualForget05(ContinualTofuTask):
    name = "tofu-continual-forget05"
    description = "Continual TOFU (closer-look): unlearn forget05 in 10 steps of 200 QA, every step evaluated"
    forget_split = "forget05"
    retain_split = "retain50"
    reference_key = "retain50"
    n_tasks = 10
    sizes = _sizes(10, 200, 2000)


@TASKS.register("tofu-continual-forget10")
class ContinualForget10(ContinualTofuTask):
    name = "tofu-continual-forget10"
    description = "Continual TOFU (closer-look): unlearn forget10 in 9 steps of 400 QA, every step evaluated"
    forget_split = "forget10"
    retain_split = "retain10"
    reference_key = "retain10"
    n_tasks = 9
    sizes = _sizes(9, 400, 400)


@TASKS.register("realworld")
class RealWorldTask(Task):
    """closer-look's real-world task: forget 20 real people, keep 20 neighbours (module docstring)."""

    name = "realworld"
    description = "Real-world unlearning (closer-look): 20 real people x 20 QA; neighbour set of 20 others"
    family = "realworld"
    reference_key = "neighbor"
    sizes = "train: forget 400, retain (neighbor) 400, full 800; eval: forget 400, neighbor 400"
    headline = ("closer_look_mu", "closer_look_fe", "forget_rouge_l", "forget_probability", "forget_entailment",
                "neighbor_rouge_l", "neighbor_probability", "neighbor_entailment")
    frontier = ("closer_look_fe", "closer_look_mu")
    efficacy_higher_is_better = True

    def __init__(self, ds_size: int = 0, embedding_model: str = EMBEDDING_MODEL, nli_model: str = NLI_MODEL,
                 max_train: int = 0) -> None:
        self.ds_size = _check_ds_size(self.name, ds_size)
        if isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 0:
            raise BenchError(f"task '{self.name}': max_train must be a non-negative integer (0 = every row), "
                             f"got {max_train!r}")
        self.max_train = max_train  # the first N rows of forget.json and neighbor.json (a quick tiny model)
        self.embedding_model = embedding_model
        self.nli_model = nli_model

    @data_hint(REALWORLD_HINT)
    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        check_limit(limit)
        src = _source(self, data_dir, REALWORLD_SUBDIR, "forget.json", "real-world task data")
        where = src.where
        train_fields = {**QA, "golden_answer": TEXT}
        f_rows, n_rows = src.records("forget"), src.records("neighbor")
        forget = _row_items(f_rows, _head(range(len(f_rows)), self.max_train, None), "forget_train", where("forget"),
                            train_fields)
        retain = _row_items(n_rows, _head(range(len(n_rows)), self.max_train, None), "neighbor_train",
                            where("neighbor"), train_fields)
        notes = {"max_train": f"training splits cut to the first {self.max_train} rows of forget.json and "
                              "neighbor.json (the eval sets are whole)"} if self.max_train else {}
        cl = {"embedding_model": self.embedding_model, "nli_model": self.nli_model}
        eval_fields = {**PERTURBED, "golden_answer": TEXT}
        sets = []
        for name, file, kind in (("forget", "forget_perturbed", "forget"), ("neighbor", "neighbor_perturbed", "retain")):
            rows = src.records(file)
            items = _row_items(rows, _head(range(len(rows)), self.ds_size, limit), name, where(file), eval_fields,
                               answer_field="golden_answer", paraphrase="paraphrased_answer",
                               keep_as={"answer": "model_answer"})
            sets.append(EvalSet(name, items, closer_look_metrics(kind, cs_field="model_answer", premise="generation", **cl),
                                role=kind, max_new_tokens=MAX_NEW_TOKENS, source=src.key(file)))
        return TaskData(forget=forget, retain=retain, full=forget + retain, eval_sets=sets, files=dict(src.files),
                        source=src.source, derived=closer_look_nodes(("neighbor",)), extras={"data_notes": notes})
