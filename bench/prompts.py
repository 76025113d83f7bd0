"""How a question becomes a prompt, and an answer a scored continuation.

A :class:`PromptConfig` is part of the model's configuration: the same config formats the
prompts of every metric, of training (methods and ``prepare``) and of the reference runs,
and it is recorded in ``results.json``. Two styles:

* ``chat``: the tokenizer's chat template (optionally with a system prompt), rendered as
  text with the generation prompt; the continuation is the answer followed by whatever
  the template appends after an assistant turn (e.g. ``<|im_end|>\\n``), so the
  end-of-turn token is scored, as open-unlearning does.
* ``plain``: ``{bos}Question: {question}\\nAnswer:`` and continuation
  ``" " + answer + eos`` (the EOS token text).

Prompts are strings tokenized with ``add_special_tokens=False``; any BOS is in the text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class PromptConfig:
    style: str = "plain"  # "plain" | "chat"
    system_prompt: str | None = None
    template: str = PLAIN_TEMPLATE
    answer_prefix: str = " "
    bos: str = ""
    eos: str = ""
    # chat style: filled by :func:`from_tokenizer`
    chat_suffix: str = ""  # text the template appends after the assistant answer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def prompt(self, question: str, tokenizer: Any = None) -> str:
        """The prompt text for ``question`` (chat style needs the tokenizer)."""
        if self.style == "plain":
            return self.bos + self.template.format(question=question)
        if tokenizer is None:
            raise ValueError("a chat-style prompt needs the tokenizer")
        msgs = []
        if self.system_prompt:
            msgs.append({"role": "system", "content": self.system_prompt})
        msgs.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def continuation(self, answer: str) -> str:
        """The scored continuation: the answer plus the end-of-answer marker."""
        if self.style == "plain":
            return self.answer_prefix + answer + self.eos
        return answer + self.chat_suffix


def from_tokenizer(tokenizer: Any, style: str = "auto", system_prompt: str | None = None) -> PromptConfig:
    """A PromptConfig for ``tokenizer``: chat when it has a chat template (``style="auto"``)."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "auto":
        style = "chat" if has_template else "plain"
    if style == "plain":
        return PromptConfig(style="plain", bos=tokenizer.bos_token or "", eos=tokenizer.eos_token or "")
    if not has_template:
        raise ValueError("style 'chat' asked for, but the tokenizer has no chat template")
    marker = "\x00ANSWER\x00"
    msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": "q"}
    ]
    prompt = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        msgs + [{"role": "assistant", "content": marker}], tokenize=False
    )
    if not full.startswith(prompt) or marker not in full:
        raise ValueError("the chat template does not render the answer after the generation prompt")
    suffix = full.split(marker, 1)[1]
    return PromptConfig(
        style="chat", system_prompt=system_prompt, template="", answer_prefix="", chat_suffix=suffix
    )


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
