from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from p2o_cli.data.prompts import DEFAULT_INSTRUCTION, PromptConfig, build_messages, render

Q = "What is $3+4$?"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_plain_prompt_is_chatml_with_instruction(tokenizer) -> None:
    text = render(tokenizer, Q)
    assert text == f"<|im_start|>user\n{Q}\n{DEFAULT_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("position", ["user-prefix", "user-suffix", "system"])
def test_empty_template_is_byte_identical(tokenizer, position: str) -> None:
    cfg = PromptConfig(template_position=position, system_prompt="Be exact." if position == "system" else None)
    assert render(tokenizer, Q, "", cfg) == render(tokenizer, Q, None, cfg)


def test_user_prefix_inserts_one_block_before_question(tokenizer) -> None:
    z = "Work it out digit by digit.\nThen check."
    text = render(tokenizer, Q, z)
    assert f"<|im_start|>user\n{z}\n\n{Q}\n{DEFAULT_INSTRUCTION}<|im_end|>" in text
    # Removing the block gives back the plain prompt exactly.
    assert text.replace(z + "\n\n", "", 1) == render(tokenizer, Q)


def test_user_suffix_and_system_positions() -> None:
    z = "Z!"
    suffix = build_messages(Q, z, PromptConfig(template_position="user-suffix"))
    assert suffix == [{"role": "user", "content": f"{Q}\n{DEFAULT_INSTRUCTION}\n\nZ!"}]
    system = build_messages(Q, z, PromptConfig(template_position="system", system_prompt="S"))
    assert system[0] == {"role": "system", "content": "S\n\nZ!"}
    assert system[1]["content"] == f"{Q}\n{DEFAULT_INSTRUCTION}"
    alone = build_messages(Q, z, PromptConfig(template_position="system"))
    assert alone[0] == {"role": "system", "content": "Z!"}


def test_bad_position_is_rejected() -> None:
    with pytest.raises(ValueError, match="--template-position must be one of"):
        PromptConfig(template_position="middle")


def test_thinking_flag_reaches_the_chat_template(tokenizer) -> None:
    # A template that shows the flag, like Qwen3's does with an empty think block.
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    )
    on, off = PromptConfig(enable_thinking=True), PromptConfig(enable_thinking=False)
    assert not render(tokenizer, Q, None, on).endswith("<think></think>")
    assert render(tokenizer, Q, None, off).endswith("<think></think>")
    # Templated and plain prompts get the same thinking treatment.
    assert render(tokenizer, Q, "Z", off).endswith("<think></think>")
