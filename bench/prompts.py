"""How a question becomes a prompt, and an answer a scored continuation.

A :class:`PromptConfig` is part of the model's configuration: the same config formats the
prompts of every metric, of training (methods and ``prepare``) and of the reference runs,
and it is recorded in ``results.json`` (``config.prompt``) and hashed into the model
fingerprint (so into the request-cache key). Three styles, named after open-unlearning's
two prompt modes (``src/data/utils.py::preprocess_chat_instance``, the model configs'
``template_args``):

* ``chat`` (the default for a tokenizer with a chat template): prompt = the tokenizer's
  chat template rendered as text with the generation prompt (``[system], user``);
  continuation = ``answer + eos`` (the tokenizer's EOS token, for an instruct model its
  end-of-turn token: SmolLM2's / Qwen's ``<|im_end|>``). This is open-unlearning with
  ``apply_chat_template: false`` — the prompt is built from the model config's
  ``system_prompt_with_special_tokens`` + ``user_start_tag`` + question + ``user_end_tag``
  + ``asst_start_tag``, and ``tokenizer(prompt + answer)`` gets one ``eos_token_id``
  appended. For ChatML tokenizers (SmolLM2, Qwen2.5) those tags are exactly what the chat
  template renders, so ``--prompt-style chat --system-prompt "You are a helpful
  assistant."`` reproduces open-unlearning's TOFU prompts and scored ids token for token
  (``tests/test_prompts.py`` pins the ids). The scored continuation is the answer and
  one end-of-turn token, nothing the template would add after it (no ``\\n``).
* ``chat-template``: open-unlearning's ``apply_chat_template: true`` mode. Prompt as in
  ``chat``; continuation = ``answer`` + what the chat template appends after an assistant
  turn (``chat_suffix``, e.g. ``<|im_end|>\\n``) + ``eos`` again unless the suffix already
  ends with it (open-unlearning appends ``eos_token_id`` when the last template token is
  not EOS): for ChatML ``answer<|im_end|>\\n<|im_end|>``, two tokens more than ``chat``.
* ``plain`` (no chat template): ``{bos}Question: {question}\\nAnswer:`` and continuation
  ``" " + answer + eos`` (the EOS token text).

The system prompt (``--system-prompt``) goes into the chat template's system turn; without
one, the template's own default applies (SmolLM2's inserts "You are a helpful AI
assistant named SmolLM, trained by Hugging Face"). A plain-style prompt has no system turn:
a system prompt there is an error. Prompts are strings tokenized with
``add_special_tokens=False``; any BOS is in the text (the chat template's own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
STYLES = ("plain", "chat", "chat-template")
CHAT_STYLES = ("chat", "chat-template")


@dataclass(frozen=True)
class PromptConfig:
    style: str = "plain"  # one of STYLES
    system_prompt: str | None = None
    template: str = PLAIN_TEMPLATE
    answer_prefix: str = " "
    bos: str = ""
    eos: str = ""
    # chat-template style: filled by :func:`from_tokenizer`
    chat_suffix: str = ""  # text the template appends after the assistant answer

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown prompt style {self.style!r} (expected one of {', '.join(STYLES)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tokenizer: Any = None) -> PromptConfig:
        """A config from :meth:`to_dict` output (a model directory's ``bench_prompt.json``).

        ValueError for an unknown key or style. A ``chat`` config written before the EOS
        convention (an empty ``eos``) gets the tokenizer's EOS text.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown prompt config key(s): {', '.join(unknown)}")
        cfg = cls(**dict(d))
        if cfg.style == "chat" and not cfg.eos and tokenizer is not None and tokenizer.eos_token:
            cfg = cls(**{**cfg.to_dict(), "eos": tokenizer.eos_token})
        return cfg

    def prompt(self, question: str, tokenizer: Any = None) -> str:
        """The prompt text for ``question`` (chat styles need the tokenizer)."""
        if self.style == "plain":
            return self.bos + self.template.format(question=question)
        if tokenizer is None:
            raise ValueError("a chat-style prompt needs the tokenizer")
        return tokenizer.apply_chat_template(self._messages(question), tokenize=False,
                                             add_generation_prompt=True)

    def _messages(self, question: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return msgs + [{"role": "user", "content": question}]

    def continuation(self, answer: str) -> str:
        """The scored continuation: the answer plus the end-of-answer marker (see module doc)."""
        if self.style == "plain":
            return self.answer_prefix + answer + self.eos
        if self.style == "chat":
            return answer + self.eos
        extra = "" if not self.eos or self.chat_suffix.endswith(self.eos) else self.eos
        return answer + self.chat_suffix + extra


def from_tokenizer(tokenizer: Any, style: str = "auto", system_prompt: str | None = None) -> PromptConfig:
    """A PromptConfig for ``tokenizer``: ``chat`` when it has a chat template (``style="auto"``),
    else ``plain``. ValueError for a chat style without a chat template or an EOS token, or
    a system prompt with the plain style."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "auto":
        style = "chat" if has_template else "plain"
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r} (expected auto or one of {', '.join(STYLES)})")
    if style == "plain":
        if system_prompt:
            raise ValueError("a system prompt needs a chat prompt style (this model's prompts are plain: "
                             "no chat template)")
        return PromptConfig(style="plain", bos=tokenizer.bos_token or "", eos=tokenizer.eos_token or "")
    if not has_template:
        raise ValueError(f"prompt style '{style}' asked for, but the tokenizer has no chat template")
    eos = tokenizer.eos_token or ""
    if not eos:
        raise ValueError(f"prompt style '{style}' needs an EOS token; the tokenizer has none")
    marker = "\x00ANSWER\x00"
    msgs = PromptConfig(style="chat", system_prompt=system_prompt)._messages("q")
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        msgs + [{"role": "assistant", "content": marker}], tokenize=False
    )
    if not full.startswith(prompt) or marker not in full:
        raise ValueError("the chat template does not render the answer after the generation prompt")
    suffix = full.split(marker, 1)[1]
    return PromptConfig(style=style, system_prompt=system_prompt, template="", answer_prefix="",
                        eos=eos, chat_suffix=suffix)


def default_bos(tokenizer: Any) -> str:
    """The text of the special tokens ``tokenizer`` puts before a text by default
    (``add_special_tokens=True``): Llama's ``<s>``, nothing for GPT-2 or SmolLM2. This is
    "BOS where the model uses one" for the raw and document formats."""
    if tokenizer is None:
        return ""
    cached = getattr(tokenizer, "_bench_default_bos", None)
    if cached is not None:
        return cached
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    k = len(with_special) - len(plain)
    text = ""
    if k > 0 and with_special[k:] == plain:
        text = tokenizer.decode(with_special[:k], skip_special_tokens=False)
    try:
        tokenizer._bench_default_bos = text
    except AttributeError:  # pragma: no cover - tokenizers that refuse attributes
        pass
    return text
