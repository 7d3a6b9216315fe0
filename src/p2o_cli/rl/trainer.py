"""The GRPO train step with context distillation, usable in-process or from the command line.

One :meth:`PolicyTrainer.step` consumes one rollout batch:

1. tokenize each rollout on its *training* prompt (x under ``distill="original"``, x̃ under
   ``"none"``), compute advantages over the whole batch's groups;
2. split the batch into mini-batches (whole groups, seeded) and, per process, pack each
   mini-batch's shard into micro-batches of at most ``max_tokens_per_micro_batch`` tokens;
3. compute old log-probs once, with the weights as they are before any update (so the first
   mini-batch has ratio 1 and the second is one step off-policy), plus log-probs under x̃ for
   the template ratio mask and under the reference model for KL;
4. per mini-batch: accumulate gradients over micro-batches, each loss normalised by the
   mini-batch's token (or sequence) count summed over all micro-batches and processes — so
   N processes produce the single-process full-batch gradient — then clip and step AdamW.

The model stays resident: ``trainer.model`` is the plain ``PreTrainedModel`` that an
in-process engine can share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..errors import P2OError
from ..files.faults import fault
from ..files.weights import check_checkpoint_files, loading
from . import core_algos as ca
from .batch import (
    MicroBatch,
    Plan,
    RowCost,
    attention_path,
    check_token_ids,
    encode_rollouts,
    pad_rows,
    plain_anchors,
    plan_batch,
    stack_rows,
)
from .checkpoint import (
    OPTIMIZER_STATE,
    capture_rng,
    load_optimizer_state,
    read_trainer_state,
    restore_rng,
    save_trainer,
)
from .config import TrainConfig, lr_at
from .export import engine_weights, load_policy, optimizer_matches
from .logprobs import micro_batch_log_probs
from .metrics import StepSums, step_metrics

# perf/attention_path's value is the index of the path that ran.
ATTENTION_PATHS = ("padded", "packed")


def _has_gpu() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


class NonFiniteStep(P2OError):
    """A train step whose loss or gradient is NaN or infinite: stopped before any update is saved."""


class PolicyTrainer:
    """Holds the policy, AdamW, the schedule and the step counters; ``step(rollouts)`` trains one batch."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        cfg: TrainConfig,
        *,
        accelerator: Any = None,
        ref_model: Any = None,
        state: dict[str, Any] | None = None,
        optimizer_state: dict[str, Any] | None = None,
    ):

        state = state or {}
        cfg.check()
        self.cfg = cfg
        # Precision is ours (bf16 autocast on GPU, fp32 on CPU), whatever `accelerate launch` says.
        # cpu=True on a machine without GPUs is what makes accelerate join `accelerate launch
        # --multi_gpu`'s processes over gloo; without it each process silently trains alone.
        self.accelerator = accelerator or Accelerator(mixed_precision="no", cpu=not _has_gpu())
        self.tokenizer = tokenizer
        self.global_step = int(state.get("global_step", 0))
        self.train_steps = int(state.get("train_steps", 0))
        if self.cfg.gradient_checkpointing:
            # transformers 5 renamed it; older releases only have the gradient_ name.
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],  # LoRA: the adapter only
                                      lr=float(self.cfg.lr), betas=self.cfg.adam_betas,  # type: ignore[arg-type]
                                      eps=self.cfg.adam_eps, weight_decay=self.cfg.weight_decay)

        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            # DeepSpeed wants a micro-batch size and there is no dataloader to read it from:
            # ours is one packed row.
            self.accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
        self.wrapped, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.model = self.accelerator.unwrap_model(self.wrapped)
        if optimizer_state is not None:
            # The file holds the full (unsharded) state keyed by parameter name; torch maps it
            # onto whatever wrapper this run uses (none, DDP, FSDP).
            set_optimizer_state_dict(self.wrapped, self.optimizer.optimizer, optimizer_state,
                                     options=StateDictOptions(full_state_dict=True))
            for group in self.optimizer.param_groups:  # this run's hyper-parameters win over the stored ones
                group.update(betas=self.cfg.adam_betas, eps=self.cfg.adam_eps, weight_decay=self.cfg.weight_decay)
        self.ref_model = ref_model.to(self.accelerator.device).eval() if ref_model is not None else None
        if "rng" in state:
            restore_rng(state["rng"])
        else:
            torch.manual_seed(self.cfg.seed)
        self.last_metrics: dict[str, float] = {}
        self.source_dtype: Any = None

    @classmethod
    def from_checkpoint(cls, model_dir: str | Path, cfg: TrainConfig, accelerator: Any = None) -> PolicyTrainer:
        """Load a model directory; continue its optimizer and counters if it has them.

        The LR schedule is ``cfg``'s: the command line takes a checkpoint's stored one as the
        layer under the flags (``cli.common.stored_schedule``).
        """

        source = str(model_dir)
        model_dir = Path(model_dir)
        check_checkpoint_files(model_dir)  # restores an interrupted swap; refuses truncated files
        if model_dir.exists() and not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: not a model directory (no config.json)")
        if not model_dir.exists() and (source.startswith((".", "/")) or source.count("/") != 1):
            raise FileNotFoundError(f"{model_dir}: no such model directory")
        state = read_trainer_state(model_dir)
        extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}

        model, source_dtype = load_policy(model_dir, cfg, extra)
        with loading(model_dir, "tokenizer"):
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
        opt_path = model_dir / OPTIMIZER_STATE
        optimizer_state = load_optimizer_state(opt_path) if opt_path.is_file() else None
        if optimizer_state is not None and not optimizer_matches(optimizer_state, lora=cfg.lora_r > 0):
            optimizer_state = None  # switching between LoRA and full fine-tuning starts a fresh optimizer
        ref = None
        if cfg.kl_coef > 0:
            with loading(cfg.ref_model, "reference model"):
                ref = AutoModelForCausalLM.from_pretrained(cfg.ref_model, dtype=torch.float32, **extra)
        trainer = cls(model, tokenizer, cfg, accelerator=accelerator, ref_model=ref, state=state,
                      optimizer_state=optimizer_state)
        trainer.source_dtype = source_dtype  # "auto" checkpoints are written in it
        return trainer

    @property
    def sharded(self) -> bool:
        """Whether each process holds only a shard of the weights (FSDP): no engine can sample them in place."""

        return self.accelerator.distributed_type == DistributedType.FSDP

    def policy_state_dict(self) -> dict[str, Tensor]:
        """The policy's weights under the plain model's names (LoRA merged): what an engine loads.

        Under FSDP a collective: every process gets the full (gathered) weights, for its engine.
        """

        return engine_weights(self.wrapped, self.model, self.sharded)

    # ------------------------------------------------------------ public API

    def step(self, rollouts: Sequence[Any]) -> dict[str, float]:
        """Train on one rollout batch (``cfg.mini_batches`` optimizer updates); return its metrics."""
        t0 = time.perf_counter()
        with self._train_mode():
            plan, adv, sums = self._prepare(rollouts, self.cfg.mini_batches)
            t1 = time.perf_counter()
            old = self._score(plan, sums)
            t2 = time.perf_counter()
            lr = lr_at(self.cfg, self.train_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            for mbs, counts in zip(plan.train, old["counts"]):
                self._accumulate(mbs, old, adv, counts, sums)
                fault("update")  # reliability tests: killed mid-update
                self._optimizer_step(sums)
            self.train_steps += 1
        t3 = time.perf_counter()
        sums.reduce(self.accelerator)
        metrics = {"training/step": self.global_step, "training/train_steps": self.train_steps,
                   **step_metrics(self.cfg, rollouts, plan, adv, sums, lr, self.accelerator.num_processes,
                                  has_ref=self.ref_model is not None)}
        # timing/old_logprob is verl's name; timing/old_log_probs is kept for existing readers.
        metrics.update({"timing/prepare": t1 - t0, "timing/old_log_probs": t2 - t1, "timing/old_logprob": t2 - t1,
                        "timing/update": t3 - t2, "timing/step": t3 - t0})
        metrics["perf/tokens_per_s"] = sum(s.n_tokens for s in plan.seqs) / max(t3 - t0, 1e-9)
        metrics["perf/train_tokens_per_s"] = metrics["perf/tokens_per_s"]
        # metrics.jsonl holds numbers only: 0 = padded rows, 1 = varlen-packed rows.
        metrics["perf/attention_path"] = float(ATTENTION_PATHS.index(self.attention_path))
        self.last_metrics = metrics
        return metrics

    def compute_gradients(self, rollouts: Sequence[Any]) -> dict[str, Tensor]:
        """The gradient of the batch's loss (one mini-batch, no update), by parameter name; for tests."""
        with self._train_mode():
            plan, adv, sums = self._prepare(rollouts, 1)
            old = self._score(plan, sums)
            self._accumulate(plan.train[0], old, adv, old["counts"][0], sums)
        grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None}
        self.optimizer.zero_grad(set_to_none=True)
        return grads

    def state(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step,
            "train_steps": self.train_steps,
            "schedule": self.cfg.schedule(),
            "seed": self.cfg.seed,
            "world_size": self.accelerator.num_processes,
            "rng": capture_rng(),
            "last_metrics": self.last_metrics,
        }

    def save(self, out_dir: str | Path, extra_config: dict[str, Any] | None = None, owner: str | None = None) -> None:
        """Write the checkpoint atomically (main process); every process must call it.

        ``owner`` (who writes it: a run, train-step) goes into the checkpoint's owner file."""
        save_trainer(self, out_dir, {"train": dataclasses.asdict(self.cfg), **(extra_config or {})}, owner)

    @property
    def attention_path(self) -> str:
        """``"packed"`` or ``"padded"``: the micro-batch shape for this model's attention kernel."""
        impl = getattr(self.model.config, "_attn_implementation", None)
        return attention_path(self.cfg.packing, impl, self.accelerator.device.type)

    # ------------------------------------------------------------ internals

    def _prepare(self, rollouts: Sequence[Any], n_mini: int) -> tuple[Plan, Tensor, StepSums]:
        if not rollouts:
            raise P2OError("no rollouts to train on")
        cfg = self.cfg
        seqs = encode_rollouts(rollouts, self.tokenizer, cfg.distill, keep_templated=cfg.ratio_mask is not None)
        if not any(s.response_ids for s in seqs):
            raise P2OError("no rollout has a response token to train on")
        check_token_ids(seqs, self.accelerator.unwrap_model(self.model).get_input_embeddings().num_embeddings)
        rewards = torch.tensor([float(r.reward) for r in rollouts], dtype=torch.float32)
        anchors = plain_anchors(rollouts) if cfg.templated_baseline == "plain" else None
        adv = ca.compute_advantages(cfg.adv_estimator, rewards, [r.id for r in rollouts], anchors=anchors,
                                    norm_by_std=cfg.std_norm)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        plan = plan_batch(
            seqs, n_mini, cfg.max_tokens_per_micro_batch,
            seed=cfg.seed * 1_000_003 + self.train_steps,  # a fresh split each batch, same on every process
            rank=self.accelerator.process_index, world_size=self.accelerator.num_processes, pad_token=pad,
            path=self.attention_path,  # --packing auto: a group's responses may share their prompt's row
            row_cost=RowCost.of(self.model.config) if cfg.packing == "auto" else None,
        )
        return plan, adv.to(self.accelerator.device), StepSums()

    @contextlib.contextmanager
    def _train_mode(self) -> Any:
        """Train mode for the step, then back to what it was (eval, for an engine sharing the model)."""
        was_training = self.model.training
        self.wrapped.train()
        try:
            yield
        finally:
            self.wrapped.train(was_training)

    def _log_probs(self, model: Any, mb: MicroBatch, entropy: bool = False) -> tuple[Tensor, Tensor | None]:
        bf16 = self.accelerator.device.type == "cuda" and self.cfg.bf16
        return micro_batch_log_probs(model, mb, self.accelerator.device, self.cfg.temperature, bf16, entropy)

    @torch.no_grad()
    def _score(self, plan: Plan, sums: StepSums) -> dict[str, Any]:
        """Old (and reference, and x̃) log-probs per sequence, the loss masks, the global counts."""
        old: dict[int, Tensor] = {}
        ref: dict[int, Tensor] = {}
        for m, mb in ((m, mb) for m, mbs in enumerate(plan.train) for mb in mbs):
            if m == 0 and self._on_policy_in_update(plan, mb):
                continue
            logp, _ = self._log_probs(self.wrapped, mb)
            if self.ref_model is not None:
                ref_logp, _ = self._log_probs(self.ref_model, mb)
            if not mb.dummy:
                old.update(zip(mb.seqs, logp.split(mb.lengths)))
                if self.ref_model is not None:
                    ref.update(zip(mb.seqs, ref_logp.split(mb.lengths)))
        device = self.accelerator.device
        keep = {i: torch.ones(len(plan.seqs[i].response_ids), dtype=torch.bool, device=device) for i in plan.local}
        if self.cfg.ratio_mask is not None:
            low, high = self.cfg.ratio_mask
            for mb in plan.templated:
                logp_xt, _ = self._log_probs(self.wrapped, mb)
                if mb.dummy:
                    continue
                for i, lp in zip(mb.seqs, logp_xt.split(mb.lengths)):
                    keep[i], _ = ca.template_ratio_mask(old[i], lp, None, low, high)
                    log_ratio = (old[i] - lp).double().clamp(-100.0, 100.0)
                    sums.add("ratio/sum", log_ratio.exp().sum().item())
                    sums.add("ratio/tokens", log_ratio.numel())
                    sums.add("ratio/dropped", (~keep[i]).sum().item())
                    sums.low("ratio/min", log_ratio.min().exp().item())
                    sums.high("ratio/max", log_ratio.max().exp().item())
            for key in ("ratio/sum", "ratio/tokens", "ratio/dropped"):
                sums.add(key, 0.0)  # every process needs the same keys for the reduction
            sums.low("ratio/min", math.inf)
            sums.high("ratio/max", -math.inf)
        # Loss normalisers per mini-batch, over all micro-batches and processes.
        local = torch.tensor(
            [[sum(int(keep[i].sum()) for i in part if i in keep), sum(int(keep[i].any()) for i in part if i in keep)]
             for part in plan.mini_batches],
            dtype=torch.float64, device=self.accelerator.device,
        )
        counts = self.accelerator.reduce(local, "sum") if self.accelerator.num_processes > 1 else local
        return {"old": old, "ref": ref, "keep": keep, "counts": counts.tolist()}

    def _on_policy_in_update(self, plan: Plan, mb: MicroBatch) -> bool:
        """Whether a first-mini-batch micro-batch can take its old log-probs from its own update pass.

        Before the first optimizer step the weights are the old ones, so the update's forward
        gives the old log-probs (detached): scoring them separately would be a wasted forward.
        Not when they are needed beforehand: for the template ratio mask (templated rollouts,
        whose mask sets the loss normaliser) or next to a reference model's pass.
        """
        if mb.dummy or self.ref_model is not None:
            return False
        return all(plan.seqs[i].templated_prompt_ids is None or self.cfg.ratio_mask is None for i in mb.seqs)

    def _accumulate(self, mbs: list[MicroBatch], old: dict[str, Any], adv: Tensor, counts: Sequence[float],
                    sums: StepSums) -> None:
        """Forward/backward every micro-batch of one mini-batch; gradients sum across processes."""
        cfg, acc = self.cfg, self.accelerator
        tokens, n_seqs = max(counts[0], 1.0), max(counts[1], 1.0)
        policy_loss = ca.get_policy_loss(cfg.policy_loss)
        for j, mb in enumerate(mbs):
            # Gradients are all-reduced once, on the last micro-batch of the mini-batch.
            sync = contextlib.nullcontext() if j == len(mbs) - 1 else acc.no_sync(self.wrapped)
            with sync:
                logp, ent = self._log_probs(self.wrapped, mb, entropy=cfg.log_entropy)
                if mb.dummy:
                    acc.backward(logp.sum() * 0.0)
                    continue
                logp_rows, resp_mask = pad_rows(logp, mb.lengths)
                own = logp.detach().split(mb.lengths)  # the old log-probs where they were not scored
                old_rows = stack_rows([old["old"].get(i, lp) for i, lp in zip(mb.seqs, own)])
                mask = stack_rows([old["keep"][i] for i in mb.seqs], fill=False) & resp_mask
                pg, stats = policy_loss(logp_rows, old_rows, adv[mb.seqs], mask, clip_low=cfg.clip_low,
                                        clip_high=cfg.clip_high, dual_clip=cfg.dual_clip_bound)
                loss = ca.aggregate_loss(pg, mask, cfg.loss_agg, global_tokens=tokens, global_seqs=n_seqs)
                value = loss.item()
                if not math.isfinite(value) and acc.num_processes == 1:  # several: the gradient norm says it
                    self._stop_non_finite(f"the policy loss is {value}")
                sums.add("pg_loss", value)
                if self.ref_model is not None:
                    kl = ca.kl_penalty(logp_rows, stack_rows([old["ref"][i] for i in mb.seqs]), cfg.kl_penalty)
                    kl_loss = ca.aggregate_loss(kl, mask, cfg.loss_agg, global_tokens=tokens, global_seqs=n_seqs)
                    sums.add("kl_loss", kl_loss.item())
                    loss = loss + cfg.kl_coef * kl_loss
                # DDP/FSDP average gradients over processes; each loss is already a share of the
                # global one, so scale back up to get their sum.
                acc.backward(loss * acc.num_processes)
                n_tok = float(mask.sum())
                sums.add("tokens", n_tok)
                sums.add("clipfrac", stats.get("pg_clipfrac", 0.0) * n_tok)
                sums.add("clipfrac_lower", stats.get("pg_clipfrac_lower", 0.0) * n_tok)
                sums.add("ppo_kl", stats.get("ppo_kl", 0.0) * n_tok)
                if ent is not None:
                    sums.add("entropy", float(ent.sum()))
                    sums.add("entropy_tokens", float(ent.numel()))
                sums.high("micro_batch_tokens", mb.n_tokens)
        for key in ("pg_loss", "kl_loss", "tokens", "clipfrac", "clipfrac_lower", "ppo_kl", "entropy",
                    "entropy_tokens"):
            sums.add(key, 0.0)
        sums.high("micro_batch_tokens", 0)
        sums.add("micro_batches", len(mbs))

    def _optimizer_step(self, sums: StepSums) -> None:
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else math.inf
        norm = self.accelerator.clip_grad_norm_(self.wrapped.parameters(), max_norm)
        # DeepSpeed clips inside its own step and may report no norm here.
        grad_norm = float(norm) if norm is not None else math.nan
        finite = norm is None or math.isfinite(grad_norm)
        if not finite:
            # A non-finite gradient would poison the weights and AdamW's moments. Every process
            # sees the same (all-reduced) norm, so all stop here together.
            self.optimizer.zero_grad(set_to_none=True)
            self._stop_non_finite(f"the gradient norm is {grad_norm}")
        self.optimizer.step()
        self.global_step += 1
        sums.add("grad_norm", grad_norm if math.isfinite(grad_norm) else 0.0)
        sums.add("updates", 1.0)
        sums.add("skipped", 0.0)
        self.optimizer.zero_grad(set_to_none=True)

    def _stop_non_finite(self, what: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteStep(
            f"train step {self.train_steps + 1}: {what} (non-finite); the step is stopped and nothing of it is saved "
            "(check the model's weights, or lower --lr)"
        )
