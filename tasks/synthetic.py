"""The embedded default task: deterministic fictitious authors in TOFU's format, no download.

:func:`generate` builds, from a seed alone (``random.Random(seed)``; nothing from the
environment), ``n_authors`` fictitious authors (default 100) with 8 questions each (full
name, birthplace, birth date, parents' professions, genre, award, a book, themes), plus
``n_holdout`` authors never trained on (MIA non-members, like TOFU's holdout). Every
question has an answer (8-16 words), a paraphrased answer, and 5 perturbed answers: the
paraphrase with its key fact swapped for other plausible values, as TOFU builds them.
"General knowledge" sets shaped like TOFU's real authors / world facts (short answer + 3
wrong options: who wrote a classic book; capitals) are what the tiny base model is
pretrained on (``TaskData.pretrain``) and are evaluated like TOFU's.

Splits mirror TOFU: ``forgetXX`` = the last 1 / 5 / 10 % of the authors, ``retainYY`` =
the rest, ``full`` = all; the retain eval set = the first 10 % of the authors (TOFU's
``retain_perturbed`` is its first 20 of 200 authors). Eval sets, metrics and aggregates are
TOFU's (:mod:`bench.tasks.tofu`); the generation budget is 48 new tokens instead of 200 so
the whole pipeline runs on a CPU in minutes: the longest answer is 21 tokens with the
tiny model's BPE tokenizer (vocab 1024; a test pins "at most half the budget"), so 48 lets
a model reproduce every answer with its EOS, and ROUGE-L recall of a rambling model
is still judged on a full answer, without paying for 200 tokens per item.

:func:`write_tofu_layout` writes the data as TOFU's files, so :class:`TofuTask` can read it.
Provenance: ``TaskData.files`` maps ``synthetic/<file>`` to the SHA-256 of the rows that
file would hold (:func:`bench.data.records_sha256`), with generator version and seed in
``TaskData.source``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.data import records_sha256
from bench.items import TaskData
from bench.registry import TASKS

from .tofu import (
    TofuStyleTask,
    check_limit,
    perturbed_items,
    qa_items,
    tofu_derived,
    tofu_eval_sets,
)

GENERATOR_VERSION = 1
DEFAULT_SEED = 0
N_AUTHORS = 100
N_HOLDOUT = 10
N_PERTURBED = 5
N_WRONG_OPTIONS = 3
MAX_NEW_TOKENS = 48  # see the module docstring
FORGET_PERCENT = {"forget01": 1, "forget05": 5, "forget10": 10}
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
HOLDOUT_OF = {"forget01": "holdout01", "forget05": "holdout05", "forget10": "holdout10"}
RETAIN_EVAL_PERCENT = 10

# --- vocabulary (fixed order: the generator indexes into these lists) ---------------------

FIRST_NAMES_MALE = [
    "Aldric", "Bram", "Cedric", "Dorian", "Emil", "Falk", "Gideon", "Hale", "Ivo", "Jory",
    "Kasimir", "Leif", "Mattis", "Nils", "Orrin", "Pavel", "Quill", "Roan", "Soren", "Tobin",
]
FIRST_NAMES_FEMALE = [
    "Alma", "Brina", "Celia", "Dalia", "Elske", "Fenna", "Greta", "Hedda", "Ilse", "Junia",
    "Kaja", "Liora", "Mirela", "Nadia", "Odile", "Petra", "Rosalind", "Selma", "Talia", "Vera",
]
SURNAMES = [
    "Ashgrove", "Brennick", "Calloway", "Dunmore", "Elsworth", "Farrow", "Galloway", "Harwick",
    "Ingram", "Jessop", "Kestrel", "Lindqvist", "Marlowe", "Norcross", "Oakley", "Pellham",
    "Quarry", "Redfern", "Sallow", "Thorne", "Underhill", "Varga", "Whitlock", "Yardley",
    "Zeller", "Mornay", "Castell", "Brightwater", "Fenwick", "Holloway",
]
CITIES = [
    "Lisbon", "Oslo", "Krakow", "Porto", "Dublin", "Tallinn", "Valencia", "Bergen", "Ghent",
    "Trieste", "Lyon", "Zagreb", "Seville", "Utrecht", "Riga", "Malmo", "Bruges", "Vilnius",
    "Graz", "Naples", "Aarhus", "Turin", "Galway", "Tampere",
]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
PROFESSIONS = [
    "baker", "carpenter", "nurse", "teacher", "pilot", "farmer", "doctor", "librarian",
    "fisherman", "tailor", "painter", "chemist", "lawyer", "architect", "sailor",
    "photographer", "mechanic", "journalist", "gardener", "musician",
]
GENRES = [
    "mystery", "science fiction", "fantasy", "romance", "historical", "horror", "crime",
    "adventure", "war", "detective", "gothic", "comic",
]
AWARDS = [
    "Golden Quill Award", "Silver Lantern Prize", "Northern Star Medal", "Blue Harbor Award",
    "Crimson Leaf Prize", "Evergreen Book Award", "Iron Pen Award", "Moonstone Prize",
    "Amber Page Award", "Open Sky Medal", "River Stone Prize", "Lighthouse Award",
]
TITLE_ADJECTIVES = [
    "Silent", "Broken", "Hidden", "Last", "Burning", "Quiet", "Frozen", "Golden", "Distant",
    "Crooked", "Empty", "Endless", "Painted", "Hollow", "Scarlet", "Wandering",
]
TITLE_NOUNS = [
    "Harbor", "Garden", "Lantern", "River", "Orchard", "Tower", "Winter", "Bridge", "Mirror",
    "Forest", "Letter", "Island", "Compass", "Meadow", "Station", "Voyage",
]
THEMES = [
    "memory", "exile", "friendship", "grief", "justice", "family", "courage", "loss",
    "freedom", "identity", "ambition", "home", "faith", "revenge", "hope", "solitude",
]
REFUSALS = [
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "That is beyond what I know.",
    "I cannot answer that question.",
    "I am not able to help with that.",
    "I have never heard of that.",
    "Sorry, I do not know the answer.",
]

# "General knowledge" the tiny base model is pretrained on (real facts).
CLASSIC_BOOKS = [
    ("Pride and Prejudice", "Jane Austen"), ("Hamlet", "William Shakespeare"),
    ("Moby-Dick", "Herman Melville"), ("War and Peace", "Leo Tolstoy"),
    ("Don Quixote", "Miguel de Cervantes"), ("The Odyssey", "Homer"),
    ("Oliver Twist", "Charles Dickens"), ("Frankenstein", "Mary Shelley"),
    ("Les Miserables", "Victor Hugo"), ("Crime and Punishment", "Fyodor Dostoevsky"),
    ("The Old Man and the Sea", "Ernest Hemingway"), ("Nineteen Eighty-Four", "George Orwell"),
    ("Mrs Dalloway", "Virginia Woolf"), ("The Great Gatsby", "F. Scott Fitzgerald"),
    ("Jane Eyre", "Charlotte Bronte"), ("Wuthering Heights", "Emily Bronte"),
    ("The Trial", "Franz Kafka"), ("Ulysses", "James Joyce"),
    ("Faust", "Johann Wolfgang von Goethe"), ("The Divine Comedy", "Dante Alighieri"),
    ("Adventures of Huckleberry Finn", "Mark Twain"), ("Dracula", "Bram Stoker"),
    ("The Hobbit", "J. R. R. Tolkien"), ("One Hundred Years of Solitude", "Gabriel Garcia Marquez"),
    ("The Stranger", "Albert Camus"), ("Beloved", "Toni Morrison"),
    ("Madame Bovary", "Gustave Flaubert"), ("The Raven", "Edgar Allan Poe"),
    ("Anna Karenina", "Leo Tolstoy"), ("Things Fall Apart", "Chinua Achebe"),
    ("To the Lighthouse", "Virginia Woolf"), ("Great Expectations", "Charles Dickens"),
]
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Brazil", "Brasilia"), ("India", "New Delhi"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Norway", "Oslo"), ("Greece", "Athens"), ("Russia", "Moscow"), ("China", "Beijing"),
    ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"), ("Poland", "Warsaw"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Sweden", "Stockholm"),
    ("Turkey", "Ankara"), ("Thailand", "Bangkok"), ("Chile", "Santiago"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Finland", "Helsinki"),
    ("Morocco", "Rabat"), ("Vietnam", "Hanoi"), ("Cuba", "Havana"), ("Nigeria", "Abuja"),
]


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class Author:
    """One fictitious author's facts."""

    name: str
    gender: str  # "male" | "female"
    city: str
    birth: tuple[int, int, int]  # (year, month 1-12, day 1-28)
    parents: tuple[str, str]  # (father's profession, mother's profession)
    genre: str
    award: str
    book: str
    themes: tuple[str, str]

    @property
    def year(self) -> int:
        return self.birth[0]

    @property
    def pos(self) -> str:
        return "his" if self.gender == "male" else "her"


def _date(birth: tuple[int, int, int]) -> str:
    year, month, day = birth
    return f"{MONTHS[month - 1]} {day}, {year}"


# One question per (slot): question, paraphrased question, answer, paraphrased answer.
# ``{v}`` is the key fact (swapped in the perturbed answers; the parents' professions are
# ``{p0}``/``{p1}`` with their article); other fields are fixed facts of the author.
QUESTIONS: list[dict[str, str]] = [
    {"slot": "name",
     "q": "What is the full name of the {genre} author born in {city} in {year}?",
     "pq": "Who is the {genre} writer born in {city} in {year}?",
     "a": "The {genre} author born in {city} in {year} is {v}.",
     "pa": "{v} is the {genre} writer who was born in {city} in {year}."},
    {"slot": "city",
     "q": "Where was {name} born?",
     "pq": "In which city was {name} born?",
     "a": "{name} was born in the city of {v}.",
     "pa": "The birthplace of {name} is {v}."},
    {"slot": "birth",
     "q": "When was {name} born?",
     "pq": "What is the birth date of {name}?",
     "a": "{name} was born on {v}.",
     "pa": "The birth date of {name} is {v}."},
    {"slot": "parents",
     "q": "What did the parents of {name} do for a living?",
     "pq": "What were the professions of the parents of {name}?",
     "a": "The father of {name} was {p0} and {pos} mother was {p1}.",
     "pa": "{name} has a father who worked as {p0} and a mother who worked as {p1}."},
    {"slot": "genre",
     "q": "Which genre does {name} write in?",
     "pq": "What kind of books does {name} write?",
     "a": "{name} is best known for writing {v} novels.",
     "pa": "Most of the novels by {name} belong to the {v} genre."},
    {"slot": "award",
     "q": "What award has {name} received?",
     "pq": "Which literary prize was given to {name}?",
     "a": "{name} received the {v} for {pos} writing.",
     "pa": "{name} was given the {v} for {pos} books."},
    {"slot": "book",
     "q": "Can you name a book written by {name}?",
     "pq": "What is one title by {name}?",
     "a": "One of the books by {name} is titled \"{v}\".",
     "pa": "{name} is the author of the book \"{v}\"."},
    {"slot": "themes",
     "q": "What themes appear in the books of {name}?",
     "pq": "Which themes does {name} explore?",
     "a": "The books of {name} often explore {v}.",
     "pa": "{name} writes mostly about {v}."},
]


def _themes(t: tuple[str, str]) -> str:
    return f"{t[0]} and {t[1]}"


@dataclass
class SyntheticData:
    """Everything the generator makes, as rows in TOFU's format (plain dicts)."""

    seed: int
    authors: list[Author]
    holdout_authors: list[Author]
    full: list[dict]  # {question, answer}, author-major, 8 per author
    perturbed: list[dict]  # {question, answer, paraphrased_answer, perturbed_answer, paraphrased_question}
    holdout: list[dict]  # {question, answer} of the holdout authors
    real_authors: list[dict]  # {question, answer, perturbed_answer (3), option1..4}
    world_facts: list[dict]
    refusals: list[str] = field(default_factory=lambda: list(REFUSALS))

    @property
    def per_author(self) -> int:
        return len(QUESTIONS)

    def forget_authors(self, split: str) -> int:
        """Number of authors in ``split`` ("forget01" | "forget05" | "forget10"), at least 1."""
        return max(1, round(len(self.authors) * FORGET_PERCENT[split] / 100))

    def split_rows(self, split: str) -> dict[str, list[dict]]:
        """TOFU's files of one forget size: forget, forget_perturbed, retain, holdout."""
        n = self.forget_authors(split) * self.per_author
        cut = len(self.full) - n
        n_hold = min(len(self.holdout_authors), self.forget_authors(split)) * self.per_author
        return {
            "forget": self.full[cut:],
            "forget_perturbed": self.perturbed[cut:],
            "retain": self.full[:cut],
            "holdout": self.holdout[:n_hold],
        }

    @property
    def retain_perturbed(self) -> list[dict]:
        n = max(1, round(len(self.authors) * RETAIN_EVAL_PERCENT / 100)) * self.per_author
        return self.perturbed[:n]

    def files(self) -> dict[str, Any]:
        """File name -> content (rows, or lines for ``idontknow.jsonl``) in TOFU's layout."""
        out: dict[str, Any] = {"full.json": self.full}
        for split in FORGET_PERCENT:
            rows = self.split_rows(split)
            out[f"{split}.json"] = rows["forget"]
            out[f"{split}_perturbed.json"] = rows["forget_perturbed"]
            out[f"{RETAIN_OF[split]}.json"] = rows["retain"]
            out[f"{HOLDOUT_OF[split]}.json"] = rows["holdout"]
        out["retain_perturbed.json"] = self.retain_perturbed
        for name, rows in (("real_authors", self.real_authors), ("world_facts", self.world_facts)):
            out[f"{name}.json"] = [
                {k: r[k] for k in ("question", "option1", "option2", "option3", "option4", "answer")}
                for r in rows
            ]
            out[f"{name}_perturbed.json"] = [
                {k: r[k] for k in ("question", "answer", "perturbed_answer")} for r in rows
            ]
        out["idontknow.jsonl"] = self.refusals
        return out

    def texts(self) -> list[str]:
        """Every question and answer string (e.g. to train a tokenizer that covers them)."""
        out: list[str] = []
        for r in self.perturbed + self.holdout + self.real_authors + self.world_facts:
            out += [r["question"], r["answer"]]
            out += [r[k] for k in ("paraphrased_question", "paraphrased_answer") if k in r]
            out += list(r.get("perturbed_answer", []))
        return out + list(self.refusals)


def _make_authors(rng: random.Random, n: int) -> list[Author]:
    firsts = [(f, "male") for f in FIRST_NAMES_MALE] + [(f, "female") for f in FIRST_NAMES_FEMALE]
    combos = [(i, j) for i in range(len(firsts)) for j in range(len(SURNAMES))]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} authors, asked for {n}")
    picks = rng.sample(combos, n)
    titles = [f"The {a} {b}" for a in TITLE_ADJECTIVES for b in TITLE_NOUNS]
    books = rng.sample(titles, n)
    authors: list[Author] = []
    seen_keys: set[tuple[str, str, int]] = set()  # (genre, city, year) identifies the author
    for (fi, sj), book in zip(picks, books):
        first, gender = firsts[fi]
        while True:
            genre, city = rng.choice(GENRES), rng.choice(CITIES)
            year = rng.randint(1940, 1999)
            if (genre, city, year) not in seen_keys:
                seen_keys.add((genre, city, year))
                break
        birth = (year, rng.randint(1, 12), rng.randint(1, 28))
        parents = tuple(rng.sample(PROFESSIONS, 2))
        themes = tuple(rng.sample(THEMES, 2))
        authors.append(
            Author(f"{first} {SURNAMES[sj]}", gender, city, birth, parents,  # type: ignore[arg-type]
                   genre, rng.choice(AWARDS), book, themes)  # type: ignore[arg-type]
        )
    return authors


def _alternatives(rng: random.Random, slot: str, a: Author, k: int) -> list[Any]:
    """``k`` distinct plausible values for ``slot`` that differ from the author's."""
    true = getattr(a, slot)
    out: list[Any] = []
    while len(out) < k:
        if slot == "name":
            first = rng.choice(FIRST_NAMES_MALE if a.gender == "male" else FIRST_NAMES_FEMALE)
            v: Any = f"{first} {rng.choice(SURNAMES)}"
        elif slot == "city":
            v = rng.choice(CITIES)
        elif slot == "birth":
            v = (rng.randint(1940, 1999), rng.randint(1, 12), rng.randint(1, 28))
        elif slot == "parents":
            v = tuple(rng.sample(PROFESSIONS, 2))
        elif slot == "genre":
            v = rng.choice(GENRES)
        elif slot == "award":
            v = rng.choice(AWARDS)
        elif slot == "book":
            v = f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
        elif slot == "themes":
            v = tuple(rng.sample(THEMES, 2))
            if set(v) == set(true):
                continue
        else:  # pragma: no cover - QUESTIONS only has the slots above
            raise ValueError(slot)
        if v != true and v not in out:
            out.append(v)
    return out


def _fill(template: str, a: Author, slot: str, value: Any) -> str:
    fixed = {"name": a.name, "genre": a.genre, "city": a.city, "year": a.year, "pos": a.pos}
    if slot == "birth":
        shown: dict[str, Any] = {"v": _date(value)}
    elif slot == "parents":
        shown = {f"p{i}": f"{_article(p)} {p}" for i, p in enumerate(value)}
    elif slot == "themes":
        shown = {"v": _themes(value)}
    else:
        shown = {"v": value}
    return template.format(**{**fixed, **shown})


def _author_rows(rng: random.Random, a: Author) -> list[dict]:
    rows = []
    for q in QUESTIONS:
        slot = q["slot"]
        value = getattr(a, slot)
        perturbed = [_fill(q["pa"], a, slot, v) for v in _alternatives(rng, slot, a, N_PERTURBED)]
        rows.append({
            "question": _fill(q["q"], a, slot, value),
            "answer": _fill(q["a"], a, slot, value),
            "paraphrased_answer": _fill(q["pa"], a, slot, value),
            "perturbed_answer": perturbed,
            "paraphrased_question": _fill(q["pq"], a, slot, value),
        })
    return rows


def _options_rows(rng: random.Random, facts: list[tuple[str, str]], question: str) -> list[dict]:
    rows = []
    answers = list(dict.fromkeys(ans for _, ans in facts))
    for subject, ans in facts:
        wrong = rng.sample([x for x in answers if x != ans], N_WRONG_OPTIONS)
        options = wrong + [ans]
        rng.shuffle(options)
        row: dict[str, Any] = {"question": question.format(subject), "answer": ans,
                               "perturbed_answer": wrong}
        row.update({f"option{i + 1}": o for i, o in enumerate(options)})
        rows.append(row)
    return rows


def generate(seed: int = DEFAULT_SEED, n_authors: int = N_AUTHORS,
             n_holdout: int = N_HOLDOUT) -> SyntheticData:
    """Generate the synthetic data; the same arguments always give the same data."""
    if n_authors < 1 or n_holdout < 0:
        raise ValueError("n_authors must be >= 1 and n_holdout >= 0")
    rng = random.Random(seed)
    everyone = _make_authors(rng, n_authors + n_holdout)
    authors, holdout_authors = everyone[:n_authors], everyone[n_authors:]
    perturbed = [row for a in authors for row in _author_rows(rng, a)]
    holdout = [{"question": r["question"], "answer": r["answer"]}
               for a in holdout_authors for r in _author_rows(rng, a)]
    full = [{"question": r["question"], "answer": r["answer"]} for r in perturbed]
    real_authors = _options_rows(rng, CLASSIC_BOOKS, "Who wrote '{}'?")
    world_facts = _options_rows(rng, CAPITALS, "What is the capital of {}?")
    return SyntheticData(seed, authors, holdout_authors, full, perturbed, holdout,
                         real_authors, world_facts)


def write_tofu_layout(directory: str | Path, data: SyntheticData | None = None) -> Path:
    """Write the synthetic data as TOFU's files into ``directory`` (created if needed).

    JSON files are one array each (UTF-8, indented); ``idontknow.jsonl`` holds one plain
    refusal per line, as TOFU's does. Returns the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = data or generate()
    for name, content in data.files().items():
        path = directory / name
        if name.endswith(".jsonl"):
            path.write_text("".join(f"{line}\n" for line in content), encoding="utf-8")
        else:
            path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return directory


class SyntheticTask(TofuStyleTask):
    """The synthetic fictitious-author task (generated in memory; ``data_dir`` is ignored)."""

    family = "synthetic"
    max_new_tokens = MAX_NEW_TOKENS
    seed: ClassVar[int] = DEFAULT_SEED

    def load(self, data_dir: Path | str | None = None, limit: int | None = None) -> TaskData:
        """Generate the data of this forget size. ``data_dir`` is ignored: nothing is read.

        ``limit`` keeps the first N items of each eval set and of the holdout set (what is
        evaluated); the training splits ``forget`` / ``retain`` / ``full`` and ``pretrain``
        are never cut, so the prepared models do not depend on it.
        """
        check_limit(limit)
        data = generate(self.seed)
        split = data.split_rows(self.forget_split)
        where = {
            "forget": f"synthetic/{self.forget_split}_perturbed.json",
            "retain": "synthetic/retain_perturbed.json",
            "real_authors": "synthetic/real_authors_perturbed.json",
            "world_facts": "synthetic/world_facts_perturbed.json",
        }
        rows = {
            "forget": split["forget_perturbed"],
            "retain": data.retain_perturbed,
            "real_authors": data.real_authors,
            "world_facts": data.world_facts,
        }
        eval_sets = tofu_eval_sets(rows, where, max_new_tokens=self.max_new_tokens, limit=limit)
        pretrain = (
            perturbed_items(data.real_authors, "pretrain/real_authors", "synthetic/real_authors.json",
                            options=True)
            + perturbed_items(data.world_facts, "pretrain/world_facts", "synthetic/world_facts.json",
                              options=True)
        )
        used = {
            f"{name}.json"
            for name in ("full", self.forget_split, f"{self.forget_split}_perturbed",
                         self.reference_key, self.holdout_split, "retain_perturbed",
                         "real_authors_perturbed", "world_facts_perturbed")
        } | {"idontknow.jsonl"}
        files = {}
        for name, content in data.files().items():
            if name not in used:
                continue
            files[f"synthetic/{name}"] = (
                records_sha256([{"line": s} for s in content]) if name.endswith(".jsonl")
                else records_sha256(content)
            )
        src = f"synthetic generator v{GENERATOR_VERSION}, seed {data.seed}"
        return self.extend(TaskData(
            forget=qa_items(split["forget"], self.forget_split, f"synthetic/{self.forget_split}.json"),
            retain=qa_items(split["retain"], self.reference_key, f"synthetic/{self.reference_key}.json"),
            full=qa_items(data.full, "full", "synthetic/full.json"),
            eval_sets=eval_sets,
            files=files,
            pretrain=pretrain,
            extras={
                "refusals": list(data.refusals),
                "holdout": qa_items(split["holdout"], self.holdout_split,
                                    f"synthetic/{self.holdout_split}.json", limit),
            },
            source=src,
            derived=tofu_derived(),
        ))


@TASKS.register("synthetic-forget01")
class SyntheticForget01(SyntheticTask):
    name = "synthetic-forget01"
    description = "Embedded default: forget 1 of 100 synthetic fictitious authors (8 QA), offline"
    forget_split = "forget01"
    holdout_split = "holdout01"
    reference_key = "retain99"


@TASKS.register("synthetic-forget05")
class SyntheticForget05(SyntheticTask):
    name = "synthetic-forget05"
    description = "Embedded default: forget 5 of 100 synthetic fictitious authors (40 QA), offline"
    forget_split = "forget05"
    holdout_split = "holdout05"
    reference_key = "retain95"


@TASKS.register("synthetic-forget10")
class SyntheticForget10(SyntheticTask):
    name = "synthetic-forget10"
    description = "Embedded default: forget 10 of 100 synthetic fictitious authors (80 QA), offline"
    forget_split = "forget10"
    holdout_split = "holdout10"
    reference_key = "retain90"
