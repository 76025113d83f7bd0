"""MUSE-News (Shi et al. 2025): unlearn BBC news articles, scored as MUSE's official
evaluation (jaechan-repo/muse_bench ``verbmem/``, ``knowmem/``, ``privleak/``).

Data: a local folder in the layout of the hub dataset ``muse-bench/MUSE-News``, one file
per (subset, split): ``<folder>/<subset>/<split>.json`` (``raw/forget.json``,
``verbmem/forget.json``, ``knowmem/forget_qa.json`` + ``forget_qa_icl.json``,
``knowmem/retain_qa.json`` or ``retain2_qa.json`` + its ``_icl``,
``privleak/{forget,holdout,retain2}.json``, ``sust/forget_<k>.json``), given as
``--data-dir`` (the ``muse_news`` folder itself or its parent) or ``$BENCH_DATA_DIR``;
without either, the hub's configs (subset = config, split = split). ``raw``/``privleak``/
``sust`` files are JSON arrays of strings (the texts); ``verbmem`` rows are
``{prompt, gt}``, ``knowmem`` rows ``{question, answer}``.

Training splits (``bench.items.Split``, format ``"document"``: whole articles, chunked into
``max_length`` windows by the training loop, every token a label):

* forget = ``raw/forget`` (889 articles);
* retain = the first available of (option ``retain_corpus="auto"``): the hub's
  ``raw/retain1`` (MUSE's unlearning scripts train on it), a local ``raw/retain1.json``, a
  local ``raw/retain2.json``, and finally ``privleak/retain2`` (100 retain2 excerpts; the
  local copy lacks the raw retain corpora, over 4 MiB upstream). Which one was used is
  recorded in ``results.json`` (``config.data_notes``) and logged;
* full (the target model's fine-tuning set, ``bench prepare``) = forget + retain (+ the
  other sustainability splits on ``muse-news-sust``); the retain-only model, fine-tuned on
  retain alone, is MUSE's *retrained* model.

Eval sets (item ids ``"<set>/<row>"``):

* ``verbmem_forget`` (role forget): ``verbmem/forget``; prompt = ``prompt`` (format
  ``raw``: BOS + text, no template), 128 new tokens, ``verbmem`` (ROUGE-L F1 against
  ``gt`` cut to its first 128 tokens).
* ``knowmem_forget`` (forget) / ``knowmem_retain`` (retain, utility): ``knowmem/forget_qa`` /
  ``retain_qa`` (local: ``retain2_qa``); each question prompted few-shot with every pair of
  the matching ``*_icl`` file as ``Question: q\\nAnswer: a\\n\\n`` then ``Question: q\\nAnswer: ``
  (format ``raw``), 32 new tokens, stop at ``"\\n\\n"``, ``"\\nQuestion"``, ``"Question:"``;
  ``knowmem`` (ROUGE-L F1 against ``answer``).
* ``privleak_forget`` (forget) / ``privleak_holdout`` (holdout): whole texts (format
  ``document``), ``mia_min_k`` with k = 0.4 and MUSE's ``int(0.4·n)`` (``min_one=False``).

Derived nodes: ``mia_min_k_auc`` (ROC AUC, members = forget positive, higher = member: see
:data:`bench.metrics.mia.AUC_CONVENTION`; MUSE's own AUC is ``1 − this``) and ``privleak``
(percent, ≈ −100 nothing unlearned, 0 = like the retrained model, > 0 over-unlearned)
against the retrained model: the run given with ``--task-set retrained=RUN_DIR`` (role
``"retrained"``; a ``muse-news`` run of the retrained model with the same ``--limit``), or,
without one, MUSE's published ``AUC'_retrained`` for News (0.4772), recorded as such in
the node's options. ``privleak_retain`` is the same against the retain-only reference run
(role ``"retain"``: the prepared alias's retain-only model, i.e. the retrained model of a
``bench prepare``), missing with a note otherwise.

``--limit N`` keeps the first N items of each eval set; training splits are never cut.
Option ``max_docs`` (default 0 = all) keeps the first N texts of each *training* corpus, for
quick offline runs (the tiny model); it is recorded and hashed like every option.

``muse-news-sust`` (sustainability): the four pair-wise disjoint ``sust/forget_1..4``
corpora are unlearned one after another (steps ``forget_1`` … ``forget_4``), each step from
the previous step's model, and every step is evaluated on the eval sets above. The local
copy lacks ``sust/forget_1``: it is read from the hub when reachable, else ``raw/forget``
is used — the same file upstream (both git blob ``92c82699``, MUSE's own sustainability
script starts from the model unlearned on ``raw/forget``) — and recorded. Data problem:
contrary to MUSE's README the published splits are *not* pair-wise disjoint (forget_1 and
forget_2 share 62 articles, 1&3 61, 1&4 57, 2&3 42, 2&4 48, 3&4 47); they are used as
published and the overlap is recorded in ``data_notes["sust_overlap"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data import (
    TEXT,
    SplitSource,
    data_hint,
    hub_offline,
    require,
    resolve_data_dir,
)
from bench.errors import BenchError, DataError
from bench.graph import Derived, Ref
from bench.items import EvalSet, Item, MetricSpec, Split, Step, TaskData
from bench.metrics.mia import benchmark_specs
from bench.registry import TASKS
from bench.task import Task

HUB_REPO = "muse-bench/MUSE-News"
DATA_SUBDIR = "muse_news"
MARKER = "verbmem/forget.json"
DATA_HINT = ("use an unchanged copy of MUSE-News (data/bbc of jaechan-repo/muse_bench, the hub's "
             f"{HUB_REPO} layout: raw/, verbmem/, knowmem/, privleak/, sust/) as --data-dir/{DATA_SUBDIR}")

VERBMEM_TOKENS = 128
KNOWMEM_TOKENS = 32
KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")
RETAIN_QA_NAMES = ("retain_qa", "retain2_qa")  # hub name, the local copy's name
RETAIN_CORPORA = ("auto", "retain1", "retain2", "privleak-retain2")
SUST_STEPS = 4


def knowmem_prompt(shots: list[tuple[str, str]], question: str) -> str:
    """MUSE's few-shot KnowMem prompt (``knowmem/get_rouge_qa.py``): every shot as
    ``Question: q\\nAnswer: a\\n\\n``, then ``Question: q\\nAnswer: `` (trailing space)."""
    head = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots)
    return head + f"Question: {question}\nAnswer: "


class MuseSource(SplitSource):
    """MUSE's (subset, split) files from a local folder, or hub configs: a
    :class:`bench.data.SplitSource` whose split names are ``"<subset>/<split>"``.

    Local: ``<folder>/<subset>/<split>.json``, recorded in :attr:`files` as
    ``muse_news/<subset>/<split>.json -> sha256``. Hub: config ``subset``, split ``split``
    of ``hub_repo``, recorded as ``hub:<repo>/<subset>/<split> -> sha256 of its rows``.
    """

    def __init__(self, folder: Path | None, hub_repo: str = HUB_REPO):
        super().__init__(folder, hub_repo)

    def expected(self, name: str) -> Path | str:
        """Where split ``name`` should be, for an error about its absence: the local file, or the hub address."""
        return self.folder / f"{name}.json" if self.folder is not None else f"hub:{self.hub_repo}/{name}"

    def has(self, name: str) -> bool:
        """Whether split ``name``'s local file exists (always True on the hub path: asked when read)."""
        if self.folder is None:
            return True
        try:
            self.path(name)
        except DataError:
            return False
        return True

    def hub_texts(self, name: str) -> tuple[list[str] | None, str]:
        """The texts of a hub split, or ``(None, why not)`` when the hub is off or unreachable."""
        if hub_offline():
            return None, "the hub is switched off (HF_HUB_OFFLINE)"
        try:
            rows = self.hub_rows(name)
        except BenchError as e:
            return None, str(e).split(";")[0]
        return [str(r.get("text", "")) for r in rows], ""


def doc_items(texts: list[str], prefix: str, max_docs: int = 0) -> list[Item]:
    """Texts as document items ``"<prefix>/<row>"`` (text in ``answer``, empty question)."""
    keep = texts[:max_docs] if max_docs else texts
    return [Item(f"{prefix}/{i}", "", t) for i, t in enumerate(keep)]


def _head(rows: list, limit: int | None) -> list:
    return rows if limit is None else rows[:limit]


class MuseNewsTask(Task):
    """MUSE-News from a local copy of ``muse-bench/MUSE-News`` or the hub (module docstring)."""

    name = "muse-news"
    description = "MUSE-News: unlearn 889 BBC articles; VerbMem, KnowMem (forget/retain), PrivLeak"
    family = "muse-news"
    reference_key = "retain"
    sizes = ("train: forget 889 articles (raw/forget), retain: raw/retain1 from the hub, else "
             "privleak/retain2 (100 texts); eval: verbmem_forget 100, knowmem_forget 100, "
             "knowmem_retain 100, privleak_forget 100, privleak_holdout 100")
    headline = ("verbmem_forget_verbmem", "knowmem_forget_knowmem", "knowmem_retain_knowmem",
                "privleak", "mia_min_k_auc", "privleak_retain")
    frontier = ("verbmem_forget_verbmem", "knowmem_retain_knowmem")
    efficacy_higher_is_better = False

    def __init__(self, retrained: str = "", retain_corpus: str = "auto", max_docs: int = 0) -> None:
        if retain_corpus not in RETAIN_CORPORA:
            raise BenchError(f"task '{self.name}': retain_corpus must be one of {', '.join(RETAIN_CORPORA)} "
                             f"(got {retain_corpus!r})")
        if max_docs < 0:
            raise BenchError(f"task '{self.name}': max_docs must be >= 0 (0 = every text), got {max_docs}")
        if retrained:
            p = Path(retrained).expanduser()
            if not (p / "results.json").is_file():
                raise BenchError(f"task '{self.name}': retrained={retrained!r} is not a finished run directory "
                                 "(no results.json); run the retrained model with --method none on this task first")
        self.retrained = retrained
        self.retain_corpus = retain_corpus
        self.max_docs = max_docs

    def reference_runs(self) -> dict[str, Path]:
        return {"retrained": Path(self.retrained).expanduser()} if self.retrained else {}

    def source(self, data_dir: Path | str | None) -> MuseSource:
        envs = tuple(dict.fromkeys((self.data_env, "BENCH_DATA_DIR")))
        return MuseSource(resolve_data_dir(data_dir, DATA_SUBDIR, MARKER, envs))

    # --- training corpora -------------------------------------------------------------

    def retain_texts(self, src: MuseSource, notes: dict[str, str]) -> list[str]:
        """The retain corpus (see the module docstring), with what was used in ``notes``."""
        choice = self.retain_corpus
        tried: list[str] = []
        if choice in ("auto", "retain1", "retain2"):
            splits = ("retain1",) if choice in ("auto", "retain1") else ("retain2",)
            for split in splits:
                if src.folder is None:
                    notes["retain_corpus"] = f"hub raw/{split}"
                    return src.texts(f"raw/{split}")
                if src.has(f"raw/{split}"):
                    notes["retain_corpus"] = f"local raw/{split}.json"
                    return src.texts(f"raw/{split}")
                texts, why = src.hub_texts(f"raw/{split}")
                if texts:
                    notes["retain_corpus"] = f"hub raw/{split} (absent locally)"
                    return texts
                tried.append(f"raw/{split} (not in {src.folder / 'raw'}; hub: {why})")
            if choice == "auto" and src.has("raw/retain2"):
                notes["retain_corpus"] = "local raw/retain2.json"
                return src.texts("raw/retain2")
            if choice != "auto":
                raise DataError(src.expected(f"raw/{splits[0]}"), f"file not found and the hub is not reachable "
                                f"({tried[-1]}); use --task-set retain_corpus=privleak-retain2 or auto")
        notes["retain_corpus"] = ("privleak/retain2 (100 retain2 excerpts) as the retain corpus"
                                  + (f": {'; '.join(tried)}" if tried else ""))
        return src.texts("privleak/retain2")

    def forget_corpora(self, src: MuseSource, notes: dict[str, str]) -> list[tuple[str, list[str]]]:
        """``[(step name, texts)]``: one forget corpus here (``raw/forget``)."""
        return [("forget", src.texts("raw/forget"))]

    # --- eval sets ----------------------------------------------------------------------

    def eval_sets(self, src: MuseSource, limit: int | None) -> list[EvalSet]:
        sets: list[EvalSet] = []
        rows = src.records("verbmem/forget")
        where = src.where("verbmem/forget")
        items = []
        for i, r in enumerate(_head(rows, limit)):
            require(r, {"prompt": TEXT, "gt": TEXT}, where, i)
            items.append(Item(f"verbmem_forget/{i}", r["prompt"], r["gt"]))
        sets.append(EvalSet("verbmem_forget", items, [MetricSpec("verbmem")], role="forget",
                            max_new_tokens=VERBMEM_TOKENS, source=src.key("verbmem/forget"), format="raw"))
        retain_qa = next((n for n in RETAIN_QA_NAMES if src.has(f"knowmem/{n}")), None)
        if retain_qa is None:
            raise DataError(src.expected("knowmem/retain_qa"),
                            "file not found (nor knowmem/retain2_qa.json, the local copy's name)")
        for set_name, split, role in (("knowmem_forget", "forget_qa", "forget"),
                                      ("knowmem_retain", retain_qa, "retain")):
            sets.append(self.knowmem_set(src, set_name, split, role, limit))
        for set_name, split, role in (("privleak_forget", "forget", "forget"),
                                      ("privleak_holdout", "holdout", "holdout")):
            texts = src.texts(f"privleak/{split}")
            items = [Item(f"{set_name}/{i}", "", t) for i, t in enumerate(_head(texts, limit))]
            for it in items:
                if not it.answer.strip():
                    raise DataError(src.where(f"privleak/{split}"), "empty text", int(it.id.rsplit("/", 1)[1]))
            sets.append(EvalSet(set_name, items, benchmark_specs("muse"),
                                role=role, max_new_tokens=1, source=src.key(f"privleak/{split}"), format="document"))
        return sets

    def knowmem_set(self, src: MuseSource, set_name: str, split: str, role: str, limit: int | None) -> EvalSet:
        qa_fields = {"question": TEXT, "answer": TEXT}
        shots_rows = src.records(f"knowmem/{split}_icl")
        for i, r in enumerate(shots_rows):
            require(r, qa_fields, src.where(f"knowmem/{split}_icl"), i)
        shots = [(r["question"], r["answer"]) for r in shots_rows]
        rows = src.records(f"knowmem/{split}")
        where = src.where(f"knowmem/{split}")
        items = []
        for i, r in enumerate(_head(rows, limit)):
            require(r, qa_fields, where, i)
            items.append(Item(f"{set_name}/{i}", knowmem_prompt(shots, r["question"]), r["answer"],
                              meta={"question": r["question"]}))
        return EvalSet(set_name, items, [MetricSpec("knowmem")], role=role, max_new_tokens=KNOWMEM_TOKENS,
                       source=f"{src.key(f'knowmem/{split}')} ({len(shots)}-shot {split}_icl)",
                       format="raw", stop=KNOWMEM_STOP)

    def derived(self) -> list[Derived]:
        """PrivLeak's nodes (module docstring), built by :func:`bench.metrics.mia.auc_nodes`:
        ``mia_min_k_auc`` and ``privleak`` (vs the retrained run's own ``mia_min_k_auc``, or
        MUSE's constant), then ``privleak_retain`` (vs the retain-only reference run's)."""
        from bench.metrics.mia import MUSE_NEWS_REFERENCE, auc_nodes

        ref: dict[str, Any] = ({"reference_role": "retrained"} if self.retrained
                               else dict(MUSE_NEWS_REFERENCE))
        nodes = auc_nodes("privleak_forget", "privleak_holdout", ["mia_min_k"], privleak_attack="mia_min_k", **ref)
        nodes.append(Derived("privleak", {"auc": Ref("@mia_min_k_auc"),
                                          "reference_auc": Ref("@mia_min_k_auc", role="retain")},
                             options={"reference_source": "the retain-only reference run"}, key="privleak_retain"))
        return nodes

    @data_hint(DATA_HINT)
    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        from bench.tasks.tofu import check_limit

        check_limit(limit)
        src = self.source(data_dir)
        notes: dict[str, str] = {}
        corpora = self.forget_corpora(src, notes)
        retain = Split(doc_items(self.retain_texts(src, notes), "retain", self.max_docs), format="document")
        eval_sets = self.eval_sets(src, limit)
        forgets = [(name, Split(doc_items(texts, name, self.max_docs), format="document")) for name, texts in corpora]
        full = Split([it for _, f in forgets for it in f] + list(retain), format="document")
        if self.max_docs:
            notes["max_docs"] = f"training corpora cut to their first {self.max_docs} texts (task option max_docs)"
        steps = []
        if len(forgets) > 1:
            steps = [Step(name, f, retain, eval_sets) for name, f in forgets]
        return TaskData(forget=forgets[0][1], retain=retain, full=full, eval_sets=eval_sets,
                        files=dict(src.files), extras={"data_notes": notes}, source=src.source,
                        derived=self.derived(), steps=steps)


@TASKS.register("muse-news")
class MuseNews(MuseNewsTask):
    pass


@TASKS.register("muse-news-sust")
class MuseNewsSust(MuseNewsTask):
    """MUSE-News sustainability: ``sust/forget_1..4`` unlearned one after another."""

    name = "muse-news-sust"
    description = "MUSE-News sustainability: unlearn sust/forget_1..4 one after another, every step evaluated"
    sizes = ("steps: forget_1 889 (hub, else raw/forget: the same file), forget_2 889, forget_3 889, "
             "forget_4 887 articles; retain as muse-news; eval per step: as muse-news")

    def forget_corpora(self, src: MuseSource, notes: dict[str, str]) -> list[tuple[str, list[str]]]:
        out = []
        for k in range(1, SUST_STEPS + 1):
            split = f"forget_{k}"
            if src.has(f"sust/{split}"):
                out.append((split, src.texts(f"sust/{split}")))
                continue
            texts, why = src.hub_texts(f"sust/{split}")
            if texts:
                notes[f"sust/{split}"] = f"hub sust/{split} (absent locally)"
                out.append((split, texts))
                continue
            if k == 1 and src.has("raw/forget"):
                notes["sust/forget_1"] = (f"raw/forget.json (sust/forget_1.json absent locally; hub: {why}); "
                                          "the same file upstream (git blob 92c82699)")
                out.append((split, src.texts("raw/forget")))
                continue
            raise DataError(src.expected(f"sust/{split}"), f"file not found and the hub is not reachable ({why}); "
                            f"copy MUSE-News sust/{split} there")
        overlaps = sust_overlaps(out)
        if overlaps:
            notes["sust_overlap"] = ("the sust splits are not pair-wise disjoint as MUSE's README says; texts "
                                     "shared: " + ", ".join(f"{a}&{b} {n}" for (a, b), n in overlaps.items())
                                     + " (kept as published)")
        return out


def sust_overlaps(corpora: list[tuple[str, list[str]]]) -> dict[tuple[str, str], int]:
    """``{(step a, step b): number of identical non-blank texts}`` for every pair that shares any."""
    sets = [(name, {t for t in texts if t.strip()}) for name, texts in corpora]
    out = {}
    for i, (a, sa) in enumerate(sets):
        for b, sb in sets[i + 1:]:
            if sa & sb:
                out[(a, b)] = len(sa & sb)
    return out
