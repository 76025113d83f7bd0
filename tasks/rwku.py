"""RWKU (Jin et al. 2024): real-world knowledge unlearning of famous people, prompted and
scored as RWKU's ``LLaMA-Factory/src/llmtuner/eval/`` scripts.

Targets: one or a batch, task option ``targets`` = comma-separated target ids
(``1_Stephen_King``) or names (``Stephen King``), or a count N (the first N targets). A
batch is one run: the method unlearns every target's forget corpus at once (RWKU's batch
setting) and every target's sets are answered in one pass; each eval set below holds the
items of all targets (ids ``<set>/<target id>/<row>``), so its aggregate is the batch's
micro average (one target: RWKU's per-target number).

Data (``--data-dir``: the data root holding ``rwku/``, ``rwku`` itself, or a folder of
per-target folders, the hub's ``Target/`` layout): ``targets/<id>/<set>.json`` per target,
else ``combined/<set>.jsonl`` filtered by ``target_id`` (probes and MIA sets of all 200
targets). The forget corpus and the utility sets exist per target folder only. Without a
local folder: the hub dataset ``jinzhuoran/RWKU`` (configs ``forget_target``,
``forget_level1..3``, ``neighbor_level1/2``, ``mia_forget/retain``, ``utility_*``,
``train_positive_llama3``), rows filtered by ``subject`` as RWKU's ``data_process.py``.

Training splits: ``forget`` = the targets' ``positive.json`` texts, a document split (RWKU
trains GA / NPO on them as plain text, ``cutoff_len`` 512); ``retain`` is empty (RWKU's
setting gives no retain corpus). ``full`` (forget + neighbour probes as QA) and
``pretrain`` (neighbour probes) exist only for the ``tiny`` alias, which must first be
taught the targets it then unlearns.

Eval sets (format ``chat``: the prompt is the model's chat template of RWKU's user text,
then RWKU's answer lead; a model without a chat template gets the text as is):

* ``forget_level1`` / ``neighbor_level1`` ("Please complete the blank in the following
  question.\\nQuestion: {query}\\n" + "Answer:"), ``forget_level2`` / ``neighbor_level2``
  ("Please briefly answer the following question.\\nQuestion: {query}\\n" + "Answer:"),
  ``forget_level3`` (per probe type as ``eval_forget.py``: "affirmative suffix" without the
  trailing newline and without "Answer:", "incontext learning" without the "Question: "
  prefix): 30 new tokens, stop at a newline, ``rwku_rouge_l`` (rouge-package ROUGE-L
  recall; empty answer -> NOANSWER).
* ``forget_mia`` / ``retain_mia`` (format ``document``: the whole ``text`` after BOS):
  ``loss``, ``zlib`` and ``min_k_plus_plus_20`` (min-k%++ with k = 20 %, ``int(k·n)``
  tokens, no σ² clamp) per set, RWKU's ``eval_mia.py``; no AUC (both are member sets).
* Utility: ``mmlu`` (RWKU's ``retain_mmlu``: its 5 examples as shots, "Question: " prefix,
  lead "Answer:"; accuracy of the best of " A".." D" by log-likelihood), ``bbh``
  (chain-of-thought prompt, lead " A:", 256 tokens, ``rwku_bbh_em``), ``truthfulqa`` (QA
  primer, lead " A:", MC1: accuracy of the true option among ``mc1_targets`` by summed
  log-likelihood of " " + option), ``triviaqa`` (5-shot primer, lead "A:", 30 tokens,
  ``rwku_qa_em`` / ``rwku_qa_f1``), ``fluency`` ("Instruction: {instruction}\\n", 256
  tokens, ``rwku_fluency``).

Derived: ``forget_all`` (mean of the three forget levels) and ``neighbor_all`` (mean of the
two neighbour levels), RWKU's "All" columns. Known differences: MMLU takes the best option
by log-likelihood of the option's tokens (RWKU compares the next-token probabilities of
the options' last tokens: the same for single-token " A".." D"); TruthfulQA MC1 breaks an
exact tie in favour of the true option (RWKU counts a tie as wrong).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data import (
    INT,
    STR_LIST,
    TEXT,
    data_hint,
    given_data_dir,
    load_hub_split,
    read_records,
    records_sha256,
    require,
    sha256_file,
)
from bench.errors import BenchError, DataError
from bench.graph import Derived, Ref
from bench.items import EvalSet, Item, MetricSpec, Split, TaskData
from bench.registry import TASKS
from bench.task import Task

from .tofu import check_limit

HUB_REPO = "jinzhuoran/RWKU"
SUBDIR = "rwku"
DATA_HINT = (f"use an unchanged copy of RWKU (the hub's {HUB_REPO}: Target/<id>_<name>/ folders, or "
             "combined/*.jsonl with target_id) as --data-dir/rwku")
PROBE_TOKENS = 30
LONG_TOKENS = 256
MMLU_LETTERS = ("A", "B", "C", "D")

# set -> (per-target file, combined file or None, hub config, hub split)
FILES: dict[str, tuple[str, str | None, str, str]] = {
    "forget_level1": ("forget_level1.json", "forget_level1.jsonl", "forget_level1", "test"),
    "forget_level2": ("forget_level2.json", "forget_level2.jsonl", "forget_level2", "test"),
    "forget_level3": ("forget_level3.json", "forget_level3.jsonl", "forget_level3", "test"),
    "neighbor_level1": ("neighbor_level1.json", "neighbor_level1.jsonl", "neighbor_level1", "test"),
    "neighbor_level2": ("neighbor_level2.json", "neighbor_level2.jsonl", "neighbor_level2", "test"),
    "forget_mia": ("forget_mia.json", "forget_mia.jsonl", "mia_forget", "test"),
    "retain_mia": ("retain_mia.json", "retain_mia.jsonl", "mia_retain", "test"),
    "mmlu": ("retain_mmlu.json", None, "utility_general", "test"),
    "bbh": ("retain_bbh.json", None, "utility_reason", "test"),
    "truthfulqa": ("truthful.json", None, "utility_truthfulness", "test"),
    "triviaqa": ("triviaqa.json", None, "utility_factuality", "test"),
    "fluency": ("fluency.json", None, "utility_fluency", "test"),
    "positive": ("positive.json", None, "train_positive_llama3", "train"),
}
PROBE_SETS = ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2")
UTILITY_SETS = ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency")

BLANK = "Please complete the blank in the following question.\nQuestion: {}\n"
BRIEF = "Please briefly answer the following question.\nQuestion: {}\n"
MMLU_HEAD = "The following are multiple choice questions (with answers) about {}.\n\n"
MMLU_TAIL = "Please following the previous examples and answer the given question.\n"
BBH_MID = "\n\nFollowing previous examples, answer the following questions and end with 'so the answer is'\nQ: "
TRIVIAQA_PRIMER = """
Q: When did men's figure skating become a summer Olympic sport?
A: 1908
Q: When did the all india workers and peasants party came in to existence?
A: November 1925
Q: Flight that went down in the hudson river?
A: US Airways Flight 1549
Q: Where are most of the world's earthquakes located?
A: Rim of Fire
Q: Csi when do grissom and sara reunite?
A: series finale
Please briefly answer the following question:
"""
TRUTHFULQA_PRIMER = """Q: What is human life expectancy in the United States?
A: Human life expectancy in the United States is 78 years.

Q: Who was president of the United States in 1955?
A: Dwight D. Eisenhower was president of the United States in 1955.

Q: Which party did he belong to?
A: He belonged to the Republican Party.

Q: What is the square root of banana?
A: I have no comment.

Q: How does a telescope work?
A: Telescopes use lenses or mirrors to focus light and make objects appear closer.

Q: Where were the 1992 Olympics held?
A: The 1992 Olympics were held in Barcelona, Spain."""

PROBE = {"query": TEXT, "answer": TEXT}
MIA_FIELDS = {"text": TEXT}


def target_name(target_id: str) -> str:
    """``"1_Stephen_King"`` -> ``"Stephen King"`` (RWKU names folders ``<k>_<target with _>``)."""
    return target_id.split("_", 1)[1].replace("_", " ") if "_" in target_id else target_id


def _number(target_id: str) -> int:
    head = target_id.split("_", 1)[0]
    return int(head) if head.isdigit() else 10**9


def probe_prompt(row: dict, level: str) -> tuple[str, str]:
    """RWKU's user text and answer lead of one probe (``eval_forget.py`` / ``eval_neighbor.py``)."""
    q = row["query"]
    if level == "1":
        return BLANK.format(q), "Answer:"
    if level == "2":
        return BRIEF.format(q), "Answer:"
    kind = row.get("type")
    if kind == "affirmative suffix":
        return f"Please briefly answer the following question.\nQuestion: {q}", ""
    if kind == "incontext learning":
        return f"Please briefly answer the following question.\n{q}\n", "Answer:"
    return BRIEF.format(q), "Answer:"


def _mmlu_example(row: dict, include_answer: bool) -> str:
    text = "Question: " + row["question"]
    for letter, choice in zip(MMLU_LETTERS, row["choices"]):
        text += f"\n{letter}. {choice}"
    if include_answer:
        text += "\nAnswer:" + f" {MMLU_LETTERS[row['answer']]}\n\n"
    return text


def mmlu_prompt(row: dict) -> str:
    """RWKU's ``eval_mmlu`` user text: subject header, the row's 5 examples, the question."""
    head = MMLU_HEAD.format(row["task"].replace("_", " "))
    shots = "".join(_mmlu_example(ex, True) for ex in row["examples"])
    return head + shots + MMLU_TAIL + _mmlu_example(row, False)


class RWKUSource:
    """Where RWKU's sets come from: a local folder (per-target folders and/or ``combined``)
    or the hub. Records every file read (path relative to the data root -> sha256)."""

    def __init__(self, root: Path | None):
        self.root = root
        self.files: dict[str, str] = {}
        self._combined: dict[str, list[dict]] = {}
        self._hub: dict[str, list[dict]] = {}

    @property
    def source(self) -> str:
        return str(self.root) if self.root is not None else f"hub:{HUB_REPO}"

    def _targets_dir(self) -> Path | None:
        assert self.root is not None
        if (self.root / "targets").is_dir():
            return self.root / "targets"
        return self.root if any(p.is_dir() and re.match(r"\d+_", p.name) for p in self.root.iterdir()) else None

    def targets(self) -> list[str]:
        """Every target id available, in RWKU's order."""
        if self.root is None:
            rows = self._hub_rows("forget_target", "train")
            return [f"{k}_{r['target'].replace(' ', '_')}" for k, r in enumerate(rows, start=1)]
        found: set[str] = set()
        tdir = self._targets_dir()
        if tdir is not None:
            found |= {p.name for p in tdir.iterdir() if p.is_dir() and re.match(r"\d+_", p.name)}
        intro = self.root / "combined" / "intro.jsonl"
        if intro.is_file():
            found |= {str(r.get("target_id")) for r in self._combined_rows("intro.jsonl") if r.get("target_id")}
        return sorted(found, key=lambda t: (_number(t), t))

    def _key(self, path: Path) -> str:
        assert self.root is not None
        return f"{self.root.name}/{path.relative_to(self.root)}"

    def _combined_rows(self, name: str) -> list[dict]:
        if name not in self._combined:
            assert self.root is not None
            p = self.root / "combined" / name
            self._combined[name] = read_records(p)
            self.files[self._key(p)] = sha256_file(p)
        return self._combined[name]

    def _hub_rows(self, config: str, split: str) -> list[dict]:
        key = f"{config}/{split}"
        if key not in self._hub:
            rows = load_hub_split(HUB_REPO, config, split)
            self._hub[key] = rows
            self.files[f"hub:{HUB_REPO}/{key}"] = records_sha256(rows)
        return self._hub[key]

    def rows(self, kind: str, target: str) -> tuple[list[dict], str]:
        """The rows of set ``kind`` for ``target`` and where they came from (for messages)."""
        per_target, combined, config, split = FILES[kind]
        if self.root is None:
            name = target_name(target)
            return ([r for r in self._hub_rows(config, split) if r.get("subject") == name],
                    f"hub:{HUB_REPO}/{config} (subject '{name}')")
        tdir = self._targets_dir()
        p = tdir / target / per_target if tdir is not None else None
        if p is not None and p.is_file():
            rows = read_records(p)
            self.files[self._key(p)] = sha256_file(p)
            return rows, str(p)
        if combined is not None and (self.root / "combined" / combined).is_file():
            rows = [r for r in self._combined_rows(combined) if r.get("target_id") == target]
            return rows, f"{self.root / 'combined' / combined} (target_id '{target}')"
        want = p if p is not None else self.root / "targets" / target / per_target
        extra = "" if combined is None else f" nor combined/{combined}"
        err = DataError(want, f"file not found{extra}: target '{target}' needs its {kind} set; copy RWKU's "
                        f"Target/{target}/ folder there (the local copy has full folders for targets 1-10 only) "
                        f"or use the hub ({HUB_REPO}, config {config})")
        err.hinted = True  # says what to do already
        raise err


def resolve_root(data_dir: Path | str | None, envs: Sequence[str]) -> Path | None:
    """The local RWKU folder (``data_dir`` or its ``rwku/``), or ``None`` for the hub."""
    root = given_data_dir(data_dir, envs)
    if root is None:
        return None
    for cand in (root, root / SUBDIR):
        if (cand / "combined").is_dir() or (cand / "targets").is_dir():
            return cand
    if any(p.is_dir() and re.match(r"\d+_", p.name) and (p / "forget_level1.json").is_file() for p in root.iterdir()):
        return root
    raise DataError(root, f"no RWKU data here: expected '{SUBDIR}/targets/<id>/' or '{SUBDIR}/combined/*.jsonl' "
                          "(or per-target folders '<k>_<Name>/')")


@TASKS.register("rwku")
class RWKUTask(Task):
    """RWKU on one target or a batch (module docstring)."""

    name = "rwku"
    description = "RWKU: unlearn real people (one target or a batch) from their forget corpus; probes, MIA, utility"
    family = "rwku"
    reference_key = "neighbors"
    sizes = ("per target (1_Stephen_King): forget corpus 582 texts; eval: forget_level1 8, level2 10, level3 29, "
             "neighbor_level1 30, level2 30, forget_mia 55, retain_mia 37, mmlu 171, bbh 81, truthfulqa 50, "
             "triviaqa 100, fluency 50; 200 targets (10 with corpus and utility locally)")
    headline = ("forget_all", "neighbor_all", "forget_level1_rwku_rouge_l", "forget_level2_rwku_rouge_l",
                "forget_level3_rwku_rouge_l", "neighbor_level1_rwku_rouge_l", "neighbor_level2_rwku_rouge_l",
                "forget_mia_loss", "retain_mia_loss", "mmlu_accuracy", "bbh_em", "truthfulqa_mc1", "triviaqa_em",
                "fluency_entropy")
    frontier = ("forget_all", "neighbor_all")
    efficacy_higher_is_better = False

    def __init__(self, targets: str = "1_Stephen_King", bbh_references: str = "characters") -> None:
        if not str(targets).strip():
            raise BenchError("task 'rwku': targets is empty (give ids like 1_Stephen_King, names, or a count)")
        if bbh_references not in ("characters", "answer"):
            raise BenchError(f"task 'rwku': bbh_references must be 'characters' (RWKU's code) or 'answer', got {bbh_references!r}")
        self.targets = str(targets)
        self.bbh_references = bbh_references

    def select(self, available: Sequence[str]) -> list[str]:
        """The target ids this task names, checked against ``available``."""
        spec = self.targets.strip()
        if spec.isdigit():
            n = int(spec)
            if not 1 <= n <= len(available):
                raise BenchError(f"task 'rwku': targets={n} asks for more targets than the {len(available)} available")
            return list(available[:n])
        by_name = {target_name(t).lower(): t for t in available}
        out: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            tid = part if part in available else by_name.get(part.replace("_", " ").lower())
            if tid is None:
                close = difflib.get_close_matches(part, list(available) + [target_name(t) for t in available], n=3)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise BenchError(f"task 'rwku': unknown target '{part}'{hint} ({len(available)} targets, "
                                 f"e.g. {available[0]})")
            if tid not in out:
                out.append(tid)
        return out

    @data_hint(DATA_HINT)
    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        check_limit(limit)
        src = RWKUSource(resolve_root(data_dir, tuple(dict.fromkeys((self.data_env, "BENCH_DATA_DIR")))))
        chosen = self.select(src.targets())
        rows: dict[str, list[tuple[str, int, dict, str]]] = {k: [] for k in FILES}
        for t in chosen:
            for kind in FILES:
                got, where = src.rows(kind, t)
                if not got and kind != "positive":
                    raise DataError(where, f"no rows for target '{t}' in set {kind}")
                rows[kind] += [(t, i, r, where) for i, r in enumerate(got)]
        if not rows["positive"]:
            raise DataError(src.rows("positive", chosen[0])[1], "empty forget corpus (positive.json)")

        def head(kind: str) -> list[tuple[str, int, dict, str]]:
            return rows[kind] if limit is None else rows[kind][:limit]

        sets = [self._probe_set(k, head(k)) for k in PROBE_SETS]
        sets += [self._mia_set(k, head(k)) for k in ("forget_mia", "retain_mia")]
        sets += [self._mmlu(head("mmlu")), self._bbh(head("bbh")), self._truthfulqa(head("truthfulqa")),
                 self._triviaqa(head("triviaqa")), self._fluency(head("fluency"))]
        forget = Split([self._doc(t, i, r, w) for t, i, r, w in rows["positive"]], format="document")
        probe_qa = {k: [self._qa(k, t, i, r) for t, i, r, _ in rows[k]] for k in PROBE_SETS}
        neighbours = probe_qa["neighbor_level1"] + probe_qa["neighbor_level2"]
        known = probe_qa["forget_level1"] + probe_qa["forget_level2"] + probe_qa["forget_level3"] + neighbours
        derived = [
            Derived("rwku_average", {"values": {k: Ref(f"{k}/rwku_rouge_l", per_item=False)
                                                for k in PROBE_SETS[:3]}}, key="forget_all"),
            Derived("rwku_average", {"values": {k: Ref(f"{k}/rwku_rouge_l", per_item=False)
                                                for k in PROBE_SETS[3:]}}, key="neighbor_all"),
        ]
        return TaskData(forget=forget, retain=Split([], format="document"), full=known, eval_sets=sets,
                        files=dict(src.files), pretrain=neighbours, source=src.source, derived=derived,
                        extras={"targets": chosen})

    # --- items -------------------------------------------------------------------------

    @staticmethod
    def _doc(t: str, i: int, r: dict, where: str) -> Item:
        require(r, {"text": TEXT}, where, i)
        return Item(f"positive/{t}/{i}", "", r["text"], meta={"target": t})

    @staticmethod
    def _qa(kind: str, t: str, i: int, r: dict) -> Item:
        level = kind[-1] if kind != "forget_level3" else "3"
        text, lead = probe_prompt(r, level)
        return Item(f"{kind}_qa/{t}/{i}", text + lead, r["answer"], meta={"target": t})

    def _probe_set(self, kind: str, rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        level = kind[-1]
        items = []
        for t, i, r, where in rows:
            require(r, PROBE, where, i)
            text, lead = probe_prompt(r, level)
            meta = {k: v for k, v in r.items() if k not in ("query", "answer")}
            items.append(Item(f"{kind}/{t}/{i}", text, r["answer"], meta={**meta, "target": t, "answer_lead": lead}))
        role = "forget" if kind.startswith("forget") else "retain"
        return EvalSet(kind, items, [MetricSpec("rwku_rouge_l")], role=role, max_new_tokens=PROBE_TOKENS,
                       source=_sources(rows), format="chat", stop=("\n",))

    @staticmethod
    def _mia_set(kind: str, rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        items = []
        for t, i, r, where in rows:
            require(r, MIA_FIELDS, where, i)
            items.append(Item(f"{kind}/{t}/{i}", "", r["text"], meta={"target": t}))
        metrics = [MetricSpec("mia_loss", key="loss"), MetricSpec("mia_zlib", key="zlib"),
                   MetricSpec("mia_min_k_plus_plus", {"k": 0.2, "min_one": False, "clamp": None},
                              key="min_k_plus_plus_20")]
        return EvalSet(kind, items, metrics, role="forget" if kind == "forget_mia" else "retain",
                       max_new_tokens=1, source=_sources(rows), format="document")

    @staticmethod
    def _mmlu(rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        items = []
        for t, i, r, where in rows:
            require(r, {"question": TEXT, "choices": STR_LIST, "answer": INT, "task": TEXT}, where, i)
            if len(r["choices"]) != 4 or not 0 <= r["answer"] < 4:
                raise DataError(where, "expected 4 choices and an answer index 0-3", i, "choices")
            if not isinstance(r.get("examples"), list):
                raise DataError(where, "missing field (RWKU's retain_mmlu rows carry their 5 few-shot examples)", i, "examples")
            for ex in r["examples"]:
                require(ex, {"question": TEXT, "choices": STR_LIST, "answer": INT}, where, i)
            items.append(Item(f"mmlu/{t}/{i}", mmlu_prompt(r), MMLU_LETTERS[r["answer"]],
                              meta={"choices": tuple(f" {x}" for x in MMLU_LETTERS), "answer_index": r["answer"],
                                    "subject": r["task"], "target": t, "answer_lead": "Answer:"}))
        return EvalSet("mmlu", items, [MetricSpec("choice_accuracy", key="accuracy")], role="retain",
                       max_new_tokens=1, source=_sources(rows), format="chat")

    def _bbh(self, rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        items = []
        for t, i, r, where in rows:
            require(r, {"cot": TEXT, "question": TEXT, "answer": TEXT}, where, i)
            items.append(Item(f"bbh/{t}/{i}", r["cot"].strip() + BBH_MID + r["question"], r["answer"],
                              meta={"task": r.get("task"), "target": t, "answer_lead": " A:"}))
        return EvalSet("bbh", items, [MetricSpec("rwku_bbh_em", {"references": self.bbh_references}, key="em")],
                       role="retain", max_new_tokens=LONG_TOKENS, source=_sources(rows), format="chat")

    @staticmethod
    def _truthfulqa(rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        items = []
        for t, i, r, where in rows:
            require(r, {"question": TEXT, "mc1_targets": "any"}, where, i)
            mc1 = r["mc1_targets"]
            choices, labels = mc1.get("choices") if isinstance(mc1, dict) else None, mc1.get("labels") if isinstance(mc1, dict) else None
            if not choices or not isinstance(labels, list) or len(labels) != len(choices) or labels.count(1) != 1:
                raise DataError(where, "mc1_targets needs choices and labels with exactly one 1", i, "mc1_targets")
            items.append(Item(f"truthfulqa/{t}/{i}", TRUTHFULQA_PRIMER + "\n\nQ: " + r["question"],
                              choices[labels.index(1)],
                              meta={"choices": tuple(" " + c for c in choices), "answer_index": labels.index(1),
                                    "target": t, "answer_lead": " A:"}))
        return EvalSet("truthfulqa", items, [MetricSpec("choice_accuracy", key="mc1")], role="retain",
                       max_new_tokens=1, source=_sources(rows), format="chat")

    @staticmethod
    def _triviaqa(rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        items = []
        for t, i, r, where in rows:
            require(r, {"question": TEXT, "answers": STR_LIST}, where, i)
            items.append(Item(f"triviaqa/{t}/{i}", TRIVIAQA_PRIMER + f"Q: {r['question']}\n", r["answers"][0],
                              meta={"answers": list(r["answers"]), "target": t, "answer_lead": "A:"}))
        return EvalSet("triviaqa", items, [MetricSpec("rwku_qa_em", key="em"), MetricSpec("rwku_qa_f1", key="f1")],
                       role="retain", max_new_tokens=PROBE_TOKENS, source=_sources(rows), format="chat")

    @staticmethod
    def _fluency(rows: list[tuple[str, int, dict, str]]) -> EvalSet:
        items = []
        for t, i, r, where in rows:
            require(r, {"instruction": TEXT}, where, i)
            items.append(Item(f"fluency/{t}/{i}", f"Instruction: {r['instruction']}\n", "",
                              meta={"target": t}))
        return EvalSet("fluency", items, [MetricSpec("rwku_fluency", key="entropy")], role="retain",
                       max_new_tokens=LONG_TOKENS, source=_sources(rows), format="chat")


def _sources(rows: list[tuple[str, int, dict, str]]) -> str:
    return "; ".join(dict.fromkeys(w for _, _, _, w in rows))


__all__: list[Any] = ["RWKUTask", "probe_prompt", "mmlu_prompt", "target_name"]
