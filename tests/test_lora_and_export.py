"""LoRA train steps (adapter only, PEFT format, merged for engines) and bf16 checkpoints."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open
from typer.testing import CliRunner

from helpers import TOK, batch, write_rollouts
from p2o_cli.cli import app
from p2o_cli.rl.lora import ADAPTER_DIR, MASTER_WEIGHTS, merged_state_dict
from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig


def lora_config(**kw) -> TrainConfig:
    return TrainConfig(lr=1e-2, total_steps=4, warmup_ratio=0.0, temperature=1.0, template_ratio_mask=None,
                       lora_r=4, lora_alpha=8.0, lora_target_modules="q_proj,v_proj", **kw)


def logits(model, text: str = "What is 12+30? 42") -> torch.Tensor:
    ids = torch.tensor([TOK(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_lora_step_changes_only_the_adapter_and_the_merged_model_matches(tmp_path, tiny_model_dir) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, lora_config())
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.step(batch())
    after = dict(trainer.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)  # B starts at zero: the step moved it
    assert {n for n, p in after.items() if p.requires_grad} == {n for n in before if "lora_" in n}

    out = tmp_path / "ckpt"
    trainer.save(out)
    with safe_open(out / ADAPTER_DIR / "adapter_model.safetensors", framework="pt") as fh:
        assert fh.keys() and all("lora_" in k for k in fh.keys())  # noqa: SIM118
    base_name = json.loads((out / ADAPTER_DIR / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base_name == str(tiny_model_dir)

    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(out / ADAPTER_DIR)).eval()
    torch.testing.assert_close(logits(merged.eval()), logits(with_adapter), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits(merged), logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir)))
    # The engines' view of the live trainer is the same merged model.
    live = merged_state_dict(trainer.model)
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(live[name], tensor, rtol=0, atol=0)

    # A chained LoRA step continues the same adapter and optimizer.
    again = PolicyTrainer.from_checkpoint(out, lora_config())
    assert again.train_steps == 1 and again.optimizer.state
    for name, p in again.model.named_parameters():
        torch.testing.assert_close(p.detach(), after[name].detach(), rtol=0, atol=0)


def test_lora_train_step_command(tmp_path, tiny_model_dir) -> None:
    rollouts = write_rollouts(tmp_path / "r.jsonl", batch())
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(app, ["train-step", "--model", str(tiny_model_dir), "--rollouts", str(rollouts),
                                      "--out", str(out), "--lora-r", "2", "--lr", "1e-2", "--temperature", "1.0"])
    assert result.exit_code == 0, result.output
    assert (out / ADAPTER_DIR / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    config = json.loads((out / ADAPTER_DIR / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["lora_alpha"] == 4  # alpha defaults to 2r


def test_bf16_checkpoint_keeps_fp32_master_weights_beside_the_optimizer(tmp_path, tiny_model_dir) -> None:
    cfg = TrainConfig(lr=1e-3, total_steps=4, warmup_ratio=0.0, temperature=1.0, template_ratio_mask=None,
                      save_dtype="bfloat16")
    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, cfg)
    trainer.step(batch())
    out = tmp_path / "bf16"
    trainer.save(out)
    with safe_open(out / "model.safetensors", framework="pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.bfloat16}  # noqa: SIM118
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert (out / MASTER_WEIGHTS).is_file() and (out / "optimizer.safetensors").is_file()
    # The chained trainer starts from the exact fp32 weights, not their bf16 rounding.
    again = PolicyTrainer.from_checkpoint(out, TrainConfig(temperature=1.0, template_ratio_mask=None))
    trained = dict(trainer.model.named_parameters())
    for name, p in again.model.named_parameters():
        assert p.dtype == torch.float32
        torch.testing.assert_close(p.detach(), trained[name].detach(), rtol=0, atol=0)

    light = tmp_path / "no-optimizer"
    trainer.cfg.save_optimizer = False
    trainer.save(light)
    assert not (light / "optimizer.safetensors").exists() and not (light / MASTER_WEIGHTS).exists()
    assert (light / "model.safetensors").is_file()
