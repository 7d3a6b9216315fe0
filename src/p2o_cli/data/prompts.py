"""Chat rendering and template insertion x̃ = T(x, z).

The template is inserted as one contiguous block; the empty template renders byte-identically
to the plain prompt, so a rollout without a template and one with ``""`` are the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..config import Config, option
from ..errors import P2OError, one_line

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
Position = Literal["user-prefix", "user-suffix", "system"]
POSITIONS: tuple[str, ...] = ("user-prefix", "user-suffix", "system")


@dataclass
class PromptConfig(Config):
    """How a problem becomes a chat prompt (the same for x and x̃)."""

    PANEL = "Prompt"

    instruction: str = option(DEFAULT_INSTRUCTION, help="Answer-format instruction appended to each question.")
    template_position: str = option("user-prefix", choices=POSITIONS,
                                    help="Where a template goes: user-prefix, user-suffix or system.")
    system_prompt: str | None = option(None, unset="none", help="System message.")
    # Qwen3's thinking switch; passed to the chat template identically for x and x̃.
    enable_thinking: bool = option(False, help="Qwen3 thinking mode, the same for x and x̃.")


def user_content(question: str, instruction: str) -> str:
    return f"{question}\n{instruction}" if instruction else question


def build_messages(question: str, template: str | None, cfg: PromptConfig) -> list[dict[str, str]]:
    """The chat messages for ``question`` with template ``template`` (None or "" = none)."""
    user = user_content(question, cfg.instruction)
    system = cfg.system_prompt
    if template:
        if cfg.template_position == "user-prefix":
            user = f"{template}\n\n{user}"
        elif cfg.template_position == "user-suffix":
            user = f"{user}\n\n{template}"
        else:
            system = f"{system}\n\n{template}" if system else template
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return messages


def render(tokenizer: Any, question: str, template: str | None = None, cfg: PromptConfig | None = None) -> str:
    """The prompt string the model sees (generation prompt appended)."""
    cfg = cfg or PromptConfig()
    messages = build_messages(question, template, cfg)
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=cfg.enable_thinking
        )
    except Exception as err:
        if not type(err).__module__.startswith("jinja2"):
            raise
        # The model directory's chat template cannot render (or jinja2's sandbox refuses it).
        source = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
        raise P2OError(f"{source}: its chat template fails ({type(err).__name__}: {one_line(str(err), 200)})") from None
