"""p2o train-step: context distillation, chained checkpoints, micro-batching, 2 processes."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import HINT, TOK, batch, make, write_rollouts
from p2o_cli.cli import app
from p2o_cli.files.records import Rollout, to_dict
from p2o_cli.rl.checkpoint import read_trainer_state
from p2o_cli.rl.trainer import PolicyTrainer, TrainConfig, lr_at

runner = CliRunner()

METRIC_KEYS = {
    "actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/grad_norm", "actor/lr", "actor/entropy",
    "actor/template_ratio/mean", "actor/template_ratio/min", "actor/template_ratio/max",
    "actor/template_ratio/masked_frac", "response_length/mean", "critic/rewards/mean", "frac_reward_zero_std",
    "perf/tokens_per_s", "timing/step", "timing/old_log_probs", "timing/update", "timing/save", "training/step",
}


def untemplated(r: Rollout, prompt: str) -> Rollout:
    return dataclasses.replace(r, prompt=prompt, template=None, template_id=None, original_prompt=None)


def invoke(*args: str):
    return runner.invoke(app, ["train-step", *args], catch_exceptions=False)


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


def seq_log_prob(model, r: Rollout, temperature: float = 0.6) -> float:
    """Σ log π(y|x) on the original prompt, as the trainer scores it."""
    prompt = TOK(r.original_prompt or r.prompt, add_special_tokens=False)["input_ids"]
    response = TOK(r.response, add_special_tokens=False)["input_ids"] + [TOK.eos_token_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response]), use_cache=False).logits[0]
    logp = torch.log_softmax(logits[len(prompt) - 1 : -1] / temperature, -1)
    return logp.gather(-1, torch.tensor(response)[:, None]).sum().item()


# ---------------------------------------------------------------- context distillation


def test_templated_rollout_takes_its_gradient_on_the_original_prompt(tiny_model_dir) -> None:
    templated, plain = make("a", 0, "42", 1.0, HINT), make("a", 1, "24", 0.0)
    as_x = untemplated(templated, templated.original_prompt)
    as_xt = untemplated(templated, templated.prompt)

    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig())
    g = trainer.compute_gradients([templated, plain])
    g_x = trainer.compute_gradients([as_x, plain])
    g_xt = trainer.compute_gradients([as_xt, plain])
    assert g.keys() == g_x.keys() and any(v.abs().sum() > 0 for v in g.values())
    for name in g:
        torch.testing.assert_close(g[name], g_x[name], rtol=0, atol=0)
    assert max((g[n] - g_xt[n]).abs().max().item() for n in g) > 1e-6

    # The "w/o context distillation" ablation trains on x̃, the prompt the model saw.
    ablation = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(distill="none"))
    g_none = ablation.compute_gradients([templated, plain])
    for name in g:
        torch.testing.assert_close(g_none[name], g_xt[name], rtol=0, atol=0)


def test_shared_prompt_rows_train_like_one_row_per_rollout(tiny_model_dir) -> None:
    rollouts = batch()
    shared = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig())  # --packing auto: shares prompts
    padded = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(packing="padded"))
    g_shared, g_padded = shared.compute_gradients(rollouts), padded.compute_gradients(rollouts)
    assert any(v.abs().sum() > 0 for v in g_shared.values())
    for name in g_shared:
        torch.testing.assert_close(g_shared[name], g_padded[name], atol=1e-6, rtol=1e-4)
    m_shared, m_padded = shared.step(rollouts), padded.step(rollouts)
    assert m_shared["perf/shared_prompt_rows"] == 2 and m_padded["perf/shared_prompt_rows"] == 0
    for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm"):
        assert m_shared[key] == pytest.approx(m_padded[key], rel=1e-4, abs=1e-7)


def test_template_ratio_mask_drops_tokens_and_logs_it(tiny_model_dir) -> None:
    rollouts = batch()
    loose = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(template_ratio_mask=None))
    tight = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(template_ratio_mask=(0.999, 1.001)))
    g_loose, g_tight = loose.compute_gradients(rollouts), tight.compute_gradients(rollouts)
    assert max((g_loose[n] - g_tight[n]).abs().max().item() for n in g_loose) > 1e-7
    m = tight.step(rollouts)
    templated_tokens = sum(len(r.response) + 1 for r in rollouts if r.template)
    assert m["actor/template_ratio/tokens"] == templated_tokens
    assert 0 < m["actor/template_ratio/masked_frac"] <= 1
    assert m["actor/template_ratio/min"] < 1 < m["actor/template_ratio/max"]
    assert m["actor/loss_tokens"] < sum(len(r.response) + 1 for r in rollouts)


def test_positive_advantage_raises_log_probability(tiny_model_dir) -> None:
    rollouts = batch()
    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(lr=3e-3, warmup_ratio=0.0, total_steps=10))
    before = [seq_log_prob(trainer.model, r) for r in rollouts]
    for _ in range(3):
        metrics = trainer.step(rollouts)
    after = [seq_log_prob(trainer.model, r) for r in rollouts]
    for r, b, a in zip(rollouts, before, after):
        assert (a > b) if r.reward > 0 else (a < b), (r.id, r.k, r.reward, b, a)
    assert trainer.global_step == 6 and trainer.train_steps == 3
    assert not trainer.model.training  # handed back in eval mode for a shared engine
    assert metrics["actor/pg_clipfrac"] >= 0 and math.isfinite(metrics["actor/grad_norm"])


def test_plain_baseline_distills_what_every_templated_rollout_shares(tiny_model_dir) -> None:
    # All three templated rollouts solve the problem: against each other (the paper's group
    # baseline) they carry no signal; against the plain rewards that made it hard they do.
    solved = [dataclasses.replace(make("h", k, "42", 1.0, HINT), plain_rewards=[0.0] * 3) for k in range(3)]
    rollouts = solved + [make("e", 0, "42", 1.0), make("e", 1, "24", 0.0)]
    group = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(template_ratio_mask=None))
    plain = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(template_ratio_mask=None,
                                                                      templated_baseline="plain"))
    g_group, g_plain = group.compute_gradients(rollouts), plain.compute_gradients(rollouts)
    g_e = group.compute_gradients(rollouts[3:])
    for name in g_group:  # under "group" the solved group adds nothing to the gradient
        torch.testing.assert_close(g_group[name] * 5, g_e[name] * 2, rtol=1e-3, atol=1e-6)
    assert max((g_group[n] - g_plain[n]).abs().max().item() for n in g_group) > 1e-6

    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(
        template_ratio_mask=None, templated_baseline="plain", lr=3e-3, warmup_ratio=0.0, total_steps=10))
    before = seq_log_prob(trainer.model, solved[0])
    trainer.step(rollouts)
    assert seq_log_prob(trainer.model, solved[0]) > before  # π("42" | x) rose without the template
    with pytest.raises(ValueError, match="templated-baseline"):
        TrainConfig(templated_baseline="mean")


def test_first_mini_batch_is_on_policy_and_kl_starts_at_zero(tiny_model_dir) -> None:
    one = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(mini_batches=1))
    m = one.step(batch())
    assert m["actor/ppo_kl"] == 0 and m["actor/pg_clipfrac"] == 0 and m["actor/mini_batches"] == 1
    cfg = TrainConfig(lr=1e-3, warmup_ratio=0.0, kl_coef=0.1, ref_model=str(tiny_model_dir))
    kl = PolicyTrainer.from_checkpoint(tiny_model_dir, cfg).step(batch())
    # Mini-batch 1 runs on the reference weights (KL 0); mini-batch 2 has moved away from them.
    assert kl["actor/kl_loss"] > 0 and kl["actor/ppo_kl"] != 0


def test_gradient_does_not_depend_on_the_micro_batch_budget_or_recomputation(tiny_model_dir) -> None:
    rollouts = batch()
    # x̃ rows (scored for the ratio mask) are the longest.
    longest = max(len(TOK(r.prompt)["input_ids"]) + len(r.response) + 1 for r in rollouts)
    small = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(max_tokens_per_micro_batch=longest))
    large = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(max_tokens_per_micro_batch=100_000))
    recompute = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(gradient_checkpointing=True))
    g_small, g_large = small.compute_gradients(rollouts), large.compute_gradients(rollouts)
    g_recompute = recompute.compute_gradients(rollouts)
    for name in g_small:
        torch.testing.assert_close(g_small[name], g_large[name], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(g_recompute[name], g_large[name], rtol=1e-5, atol=1e-7)
    m = small.step(rollouts)
    # The budget binds: one row per micro-batch (a group's shared-prompt row fits in it).
    assert m["perf/max_tokens_per_micro_batch"] <= longest and m["perf/micro_batches"] >= len({r.id for r in rollouts})


def test_padded_and_packed_micro_batches_train_alike(tiny_model_dir) -> None:
    rollouts = batch()
    padded = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(lr=1e-3, warmup_ratio=0.0))
    packed = PolicyTrainer.from_checkpoint(tiny_model_dir, TrainConfig(lr=1e-3, warmup_ratio=0.0, packing="packed"))
    # The tiny model runs sdpa: "auto" must not pack (a packed row would cost O(row²)); a row holds
    # several sequences only as one prompt's group under its mask.
    assert padded.attention_path == "padded" and packed.attention_path == "packed"
    plan, _, _ = padded._prepare(rollouts, 2)
    assert all(mb.rows == len(mb.seqs) or mb.attention_mask is not None for mbs in plan.train for mb in mbs)
    g_padded, g_packed = padded.compute_gradients(rollouts), packed.compute_gradients(rollouts)
    for name in g_padded:
        torch.testing.assert_close(g_padded[name], g_packed[name], rtol=1e-5, atol=1e-7)
    m_padded, m_packed = padded.step(rollouts), packed.step(rollouts)
    assert m_padded["perf/attention_path"] == 0.0 and m_packed["perf/attention_path"] == 1.0  # ATTENTION_PATHS
    for key in ("actor/pg_loss", "actor/ppo_kl", "actor/grad_norm", "actor/entropy", "actor/template_ratio/mean"):
        assert m_padded[key] == pytest.approx(m_packed[key], rel=1e-5, abs=1e-8), key


# ---------------------------------------------------------------- checkpoints and the command line


def test_chained_train_steps_equal_two_steps_in_one_process(tmp_path, tiny_model_dir) -> None:
    r1, r2 = write_rollouts(tmp_path / "r1.jsonl", batch()), write_rollouts(tmp_path / "r2.jsonl", batch("2"))
    metrics = tmp_path / "metrics.jsonl"
    schedule = ["--lr", "1e-3", "--warmup-ratio", "0.5", "--total-steps", "4"]
    result = invoke("--model", str(tiny_model_dir), "--rollouts", str(r1), "--out", str(tmp_path / "c1"),
                    "--metrics", str(metrics), *schedule)
    assert result.exit_code == 0, result.output
    # No schedule options: the second step continues the one stored in the checkpoint.
    result = invoke("--model", str(tmp_path / "c1"), "--rollouts", str(r2), "--out", str(tmp_path / "c2"),
                    "--metrics", str(metrics))
    assert result.exit_code == 0, result.output

    cfg = TrainConfig(lr=1e-3, warmup_ratio=0.5, total_steps=4)
    trainer = PolicyTrainer.from_checkpoint(tiny_model_dir, cfg)
    trainer.step(batch())
    trainer.step(batch("2"))
    trainer.save(tmp_path / "inproc")

    chained, inproc = weights(tmp_path / "c2"), weights(tmp_path / "inproc")
    assert chained.keys() == inproc.keys()
    for name in chained:
        assert torch.equal(chained[name], inproc[name]), name
    assert any(not torch.equal(chained[n], weights(tiny_model_dir)[n]) for n in chained)
    opt_a = load_file(str(tmp_path / "c2" / "optimizer.safetensors"))
    opt_b = load_file(str(tmp_path / "inproc" / "optimizer.safetensors"))
    assert opt_a.keys() == opt_b.keys() and all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a)
    state = read_trainer_state(tmp_path / "c2")
    assert state["global_step"] == 4 and state["train_steps"] == 2 and state["schedule"]["total_steps"] == 4
    assert orjson.loads((tmp_path / "c2" / "p2o_config.json").read_bytes())["train"]["lr"] == 1e-3

    lines = [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
    assert len(lines) == 2
    for n, line in enumerate(lines):
        assert METRIC_KEYS <= line.keys(), METRIC_KEYS - line.keys()
        assert all(math.isfinite(v) for v in line.values())
        assert line["actor/lr"] == pytest.approx(lr_at(trainer.cfg, n))
    assert [line["training/step"] for line in lines] == [2, 4]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_processes_give_the_single_process_update(tmp_path, tiny_model_dir) -> None:
    rollouts = write_rollouts(tmp_path / "r.jsonl", batch() + batch("2"))
    # lr 1e-6: Adam's first steps move a weight by ~lr·g/(|g|+eps), which magnifies float noise in
    # near-zero gradients up to ~0.1·lr; the moments below are linear in the gradients and are
    # compared tightly instead.
    common = ["--rollouts", str(rollouts), "--lr", "1e-6", "--warmup-ratio", "0", "--max-tokens-per-micro-batch", "300"]
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
         "-m", "p2o_cli", "train-step", "--model", str(tiny_model_dir), "--out", str(tmp_path / "two"),
         "--metrics", str(tmp_path / "two.jsonl"), *common],
        check=False, capture_output=True, text=True, env=env, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = invoke("--model", str(tiny_model_dir), "--out", str(tmp_path / "one"),
                    "--metrics", str(tmp_path / "one.jsonl"), *common)
    assert result.exit_code == 0, result.output

    two, one = weights(tmp_path / "two"), weights(tmp_path / "one")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-6)
    opt_two = load_file(str(tmp_path / "two" / "optimizer.safetensors"))
    opt_one = load_file(str(tmp_path / "one" / "optimizer.safetensors"))
    assert opt_two.keys() == opt_one.keys()
    for key in opt_one:  # exp_avg ~ 1e-2 here: 1e-7 is float noise, a missing shard would be 1e-3
        torch.testing.assert_close(opt_two[key], opt_one[key], rtol=1e-4, atol=1e-7)
    m_two = orjson.loads((tmp_path / "two.jsonl").read_bytes())  # one line: only the main process writes
    m_one = orjson.loads((tmp_path / "one.jsonl").read_bytes())
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/loss_tokens", "actor/template_ratio/mean"):
        assert m_two[key] == pytest.approx(m_one[key], rel=1e-4, abs=1e-7), key
    assert read_trainer_state(tmp_path / "two")["world_size"] == 2


def test_bad_rollouts_file_names_the_line_and_writes_nothing(tmp_path, tiny_model_dir) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(orjson.dumps(to_dict(make("a", 0, "42", 1.0))) + b"\n" + b'{"id": "a", "k": 1}\n')
    out = tmp_path / "ckpt"
    result = invoke("--model", str(tiny_model_dir), "--rollouts", str(path), "--out", str(out))
    assert result.exit_code == 2
    assert f"{path}:2:" in result.output and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--template-ratio-mask", "10,0.01"], "LOW <= 1 <= HIGH"),
        (["--template-ratio-mask", "0.1"], "LOW,HIGH"),
        (["--distill", "foo"], "--distill must be one of"),
        (["--distill", "none", "--template-ratio-mask", "0.1,5"], "--distill none"),
        (["--kl-coef", "0.1"], "--ref-model"),
        (["--loss-agg", "sum"], "--loss-agg"),
        (["--max-tokens-per-micro-batch", "20"], "exceeds --max-tokens-per-micro-batch 20"),
    ],
)
def test_invalid_options_exit_2_with_one_line(tmp_path, tiny_model_dir, options, message) -> None:
    rollouts = write_rollouts(tmp_path / "r.jsonl", batch())
    out = tmp_path / "ckpt"
    result = invoke("--model", str(tiny_model_dir), "--rollouts", str(rollouts), "--out", str(out), *options)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_weight_index_lists_only_model_tensors(tmp_path) -> None:
    # vLLM loads every *.safetensors of a directory unless an index names the weight files.
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from p2o_cli.rl.checkpoint import write_weight_index
    from p2o_cli.toy.tiny import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "m")
    (model_dir / "optimizer.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    write_weight_index(model_dir)
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(load_file(model_dir / "model.safetensors"))
    assert set(index["weight_map"].values()) == {"model.safetensors"}
    AutoModelForCausalLM.from_pretrained(model_dir)  # transformers still loads the directory
