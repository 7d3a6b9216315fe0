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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import core_algos as ca
from .batch import (
    DISTILL_MODES,
    TEMPLATED_BASELINES,
    MicroBatch,
    Plan,
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
    save_checkpoint,
)

DEFAULT_RATIO_MASK = (0.01, 10.0)
# Schedule fields left None continue the checkpoint's schedule, else take these.
SCHEDULE_DEFAULTS: dict[str, float | int] = {"lr": 1e-6, "warmup_ratio": 0.05, "total_steps": 1000, "min_lr_ratio": 0.0}


@dataclass
class TrainConfig:
    # LR schedule, in train steps (rollout batches): linear warmup, then cosine to min_lr_ratio·lr.
    lr: float | None = None
    warmup_ratio: float | None = None
    total_steps: int | None = None
    min_lr_ratio: float | None = None
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0  # <= 0: no clipping (the norm is still logged)
    mini_batches: int = 2
    max_tokens_per_micro_batch: int = 16384
    gradient_checkpointing: bool = False
    # Objective.
    distill: str = "original"
    template_ratio_mask: tuple[float, float] | None = DEFAULT_RATIO_MASK
    adv_estimator: str = "grpo"
    norm_adv_by_std: bool = True
    # What a templated group's advantages are measured against: "group" (the paper: the K
    # templated rollouts themselves) or "plain" (those K together with the plain rewards that
    # made the problem hard). Under "group", a trait every templated rollout shares — such as
    # the reasoning the template switched on — gets advantages summing to zero, so it is not
    # distilled; "plain" credits it against the policy without the template.
    templated_baseline: str = "group"
    policy_loss: str = "ppo_clip"
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = 3.0
    loss_agg: str = "token-mean"
    kl_coef: float = 0.0
    kl_penalty: str = "k3"
    ref_model: str | None = None
    # Log-probs use logits / temperature, as verl and TRL do: set it to the rollouts' sampling
    # temperature so the trained distribution is the sampled one (p2o rollout's default is 0.6).
    temperature: float = 0.6
    # Numerics.
    bf16: bool = True  # autocast to bf16 on GPU; CPU always runs fp32
    attn_implementation: str | None = None
    log_entropy: bool = True
    seed: int = 0
    # Checkpoint format: weights in save_dtype ("auto" = the source model's config dtype when
    # bf16/fp16, else fp32); the optimizer state (and, under bf16, fp32 master weights) only
    # with save_optimizer — without it a chained train-step starts a fresh optimizer.
    save_optimizer: bool = True
    save_dtype: str = "auto"
    # LoRA through peft: rank 0 = off (full fine-tuning).
    lora_r: int = 0
    lora_alpha: float | None = None  # None = 2 * lora_r
    lora_target_modules: str = "all-linear"

    def __post_init__(self) -> None:
        if self.distill not in DISTILL_MODES:
            raise ValueError(f"--distill must be one of {', '.join(DISTILL_MODES)}, got {self.distill!r}")
        if self.template_ratio_mask is not None:
            low, high = self.template_ratio_mask = tuple(float(v) for v in self.template_ratio_mask)  # type: ignore[assignment]
            if not 0.0 < low <= 1.0 <= high or not math.isfinite(high):
                raise ValueError(f"--template-ratio-mask needs 0 < LOW <= 1 <= HIGH, got {low},{high}")
            if self.distill == "none":
                if self.template_ratio_mask != DEFAULT_RATIO_MASK:
                    raise ValueError("--distill none trains on x̃, so --template-ratio-mask does not apply")
                self.template_ratio_mask = None
        if self.templated_baseline not in TEMPLATED_BASELINES:
            raise ValueError(f"--templated-baseline must be one of {', '.join(TEMPLATED_BASELINES)}, "
                             f"got {self.templated_baseline!r}")
        if self.loss_agg not in ca.AGG_MODES:
            raise ValueError(f"--loss-agg must be one of {', '.join(ca.AGG_MODES)}, got {self.loss_agg!r}")
        ca.get_advantage_estimator(self.adv_estimator)
        ca.get_policy_loss(self.policy_loss)
        ca.get_kl_penalty(self.kl_penalty)
        if self.kl_coef < 0 or (self.kl_coef > 0 and not self.ref_model):
            raise ValueError("--kl-coef must be >= 0, and > 0 needs --ref-model")
        if self.mini_batches < 1 or self.max_tokens_per_micro_batch < 2:
            raise ValueError("--mini-batches must be >= 1 and --max-tokens-per-micro-batch >= 2")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ValueError(f"--dual-clip must be > 1 (0 turns it off), got {self.dual_clip}")
        if not 0.0 <= self.clip_low < 1.0 or self.clip_high < 0:
            raise ValueError("--clip-low must be in [0, 1) and --clip-high >= 0")
        for name, value in (("warmup_ratio", self.warmup_ratio), ("min_lr_ratio", self.min_lr_ratio)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        if self.lr is not None and not self.lr >= 0:
            raise ValueError(f"--lr must be >= 0, got {self.lr}")
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError(f"--total-steps must be >= 1, got {self.total_steps}")
        from .lora import SAVE_DTYPES, peft_available, target_modules

        if self.save_dtype != "auto" and self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"--save-dtype must be auto or one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")
        if self.lora_r < 0:
            raise ValueError(f"--lora-r must be >= 0 (0 = off), got {self.lora_r}")
        if self.lora_r > 0:
            if not peft_available():
                raise ValueError("--lora-r needs the peft package: pip install 'p2o-cli[lora]'")
            if self.lora_alpha is not None and not self.lora_alpha > 0:
                raise ValueError(f"--lora-alpha must be > 0, got {self.lora_alpha}")
            target_modules(self.lora_target_modules)

    def with_schedule(self, stored: dict[str, Any] | None) -> TrainConfig:
        """Fill unset schedule fields from a checkpoint's stored schedule, then the defaults."""
        stored = stored or {}
        return dataclasses.replace(
            self, **{k: v if (v := getattr(self, k)) is not None else stored.get(k, d) for k, d in SCHEDULE_DEFAULTS.items()}
        )

    def schedule(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SCHEDULE_DEFAULTS}


def parse_ratio_mask(text: str) -> tuple[float, float] | None:
    """``"LOW,HIGH"`` → bounds; ``"none"``/``"off"`` → no mask."""
    if text.strip().lower() in ("none", "off"):
        return None
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--template-ratio-mask expects LOW,HIGH (e.g. 0.01,10) or none, got {text!r}") from None
    return low, high


def lr_at(cfg: TrainConfig, train_step: int) -> float:
    """LR for the ``train_step``-th rollout batch (0-based): warmup reaches full LR on its last step."""
    lr, total = float(cfg.lr), int(cfg.total_steps)  # type: ignore[arg-type]
    warmup = int(cfg.warmup_ratio * total)  # type: ignore[operator]
    if train_step < warmup:
        return lr * (train_step + 1) / (warmup + 1)
    progress = min(1.0, (train_step - warmup) / max(1, total - warmup))
    floor = float(cfg.min_lr_ratio)  # type: ignore[arg-type]
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _has_gpu() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


class _Sums:
    """Metric accumulators, reduced over processes once per step (sum, min or max)."""

    def __init__(self) -> None:
        self.sum: dict[str, float] = {}
        self.min: dict[str, float] = {}
        self.max: dict[str, float] = {}

    def add(self, key: str, value: float) -> None:
        self.sum[key] = self.sum.get(key, 0.0) + float(value)

    def low(self, key: str, value: float) -> None:
        self.min[key] = min(self.min.get(key, math.inf), float(value))

    def high(self, key: str, value: float) -> None:
        self.max[key] = max(self.max.get(key, -math.inf), float(value))

    def reduce(self, accelerator: Any) -> None:
        if accelerator.num_processes == 1:
            return
        import torch.distributed as dist

        device = accelerator.device
        for table, op in ((self.sum, dist.ReduceOp.SUM), (self.min, dist.ReduceOp.MIN), (self.max, dist.ReduceOp.MAX)):
            keys = sorted(table)  # every process has the same keys: they come from the shared plan
            t = torch.tensor([table[k] for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=op)
            table.update(zip(keys, t.tolist()))


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
        from accelerate import Accelerator

        state = state or {}
        self.cfg = cfg.with_schedule(state.get("schedule"))
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
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],  # LoRA: the adapter only
            lr=float(self.cfg.lr),  # type: ignore[arg-type]
            betas=self.cfg.adam_betas,
            eps=self.cfg.adam_eps,
            weight_decay=self.cfg.weight_decay,
        )
        from accelerate.utils import DistributedType

        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            # DeepSpeed wants a micro-batch size and there is no dataloader to read it from:
            # ours is one packed row.
            self.accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
        self.wrapped, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.model = self.accelerator.unwrap_model(self.wrapped)
        if optimizer_state is not None:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

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
        """Load a model directory; continue its optimizer, counters and schedule if it has them."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = str(model_dir)
        model_dir = Path(model_dir)
        if model_dir.exists() and not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: not a model directory (no config.json)")
        if not model_dir.exists() and (source.startswith((".", "/")) or source.count("/") != 1):
            raise FileNotFoundError(f"{model_dir}: no such model directory")
        state = read_trainer_state(model_dir)
        extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        from .export import load_policy, optimizer_matches

        model, source_dtype = load_policy(model_dir, cfg, extra)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        opt_path = model_dir / OPTIMIZER_STATE
        optimizer_state = load_optimizer_state(opt_path) if opt_path.is_file() else None
        if optimizer_state is not None and not optimizer_matches(optimizer_state, lora=cfg.lora_r > 0):
            optimizer_state = None  # switching between LoRA and full fine-tuning starts a fresh optimizer
        ref = None
        if cfg.kl_coef > 0:
            ref = AutoModelForCausalLM.from_pretrained(cfg.ref_model, dtype=torch.float32, **extra)
        trainer = cls(model, tokenizer, cfg, accelerator=accelerator, ref_model=ref, state=state,
                      optimizer_state=optimizer_state)
        trainer.source_dtype = source_dtype  # "auto" checkpoints are written in it
        return trainer

    def policy_state_dict(self) -> dict[str, Tensor]:
        """The policy's weights under the plain model's names (LoRA merged): what an engine loads."""
        from .lora import merged_state_dict

        return merged_state_dict(self.model)

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
                self._optimizer_step(sums)
            self.train_steps += 1
        t3 = time.perf_counter()
        sums.reduce(self.accelerator)
        metrics = self._metrics(rollouts, plan, adv, sums, lr)
        metrics.update({"timing/prepare": t1 - t0, "timing/old_log_probs": t2 - t1, "timing/update": t3 - t2,
                        "timing/step": t3 - t0})
        metrics["perf/tokens_per_s"] = sum(s.n_tokens for s in plan.seqs) / max(t3 - t0, 1e-9)
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

    def save(self, out_dir: str | Path, extra_config: dict[str, Any] | None = None) -> None:
        """Write the checkpoint atomically (main process); every process must call it."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        state_dict = acc.get_state_dict(self.wrapped) if sharded else None  # a collective when sharded
        optimizer_state = None
        if acc.distributed_type != DistributedType.DEEPSPEED:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            optimizer_state = get_optimizer_state_dict(
                self.wrapped, self.optimizer.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        if acc.is_main_process:
            from .export import checkpoint_payload

            config = {"train": dataclasses.asdict(self.cfg), **(extra_config or {})}
            model, state_dict, write_extra = checkpoint_payload(self.model, state_dict, self.cfg,
                                                                self.source_dtype)
            save_checkpoint(out_dir, model, self.tokenizer, state_dict=state_dict,
                            optimizer_state=optimizer_state if self.cfg.save_optimizer else None,
                            trainer_state=self.state(), config=config, extra=write_extra)
        acc.wait_for_everyone()

    # ------------------------------------------------------------ internals

    def _prepare(self, rollouts: Sequence[Any], n_mini: int) -> tuple[Plan, Tensor, _Sums]:
        if not rollouts:
            raise ValueError("no rollouts to train on")
        cfg = self.cfg
        seqs = encode_rollouts(rollouts, self.tokenizer, cfg.distill, keep_templated=cfg.template_ratio_mask is not None)
        if not any(s.response_ids for s in seqs):
            raise ValueError("no rollout has a response token to train on")
        rewards = torch.tensor([float(r.reward) for r in rollouts], dtype=torch.float32)
        kwargs = {"norm_by_std": cfg.norm_adv_by_std} if cfg.adv_estimator == "grpo" else {}
        anchors = plain_anchors(rollouts) if cfg.templated_baseline == "plain" else None
        adv = ca.compute_advantages(cfg.adv_estimator, rewards, [r.id for r in rollouts], anchors=anchors, **kwargs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        plan = plan_batch(
            seqs, n_mini, cfg.max_tokens_per_micro_batch,
            seed=cfg.seed * 1_000_003 + self.train_steps,  # a fresh split each batch, same on every process
            rank=self.accelerator.process_index, world_size=self.accelerator.num_processes, pad_token=pad,
        )
        return plan, adv.to(self.accelerator.device), _Sums()

    @contextlib.contextmanager
    def _train_mode(self) -> Any:
        """Train mode for the step, then back to what it was (eval, for an engine sharing the model)."""
        was_training = self.model.training
        self.wrapped.train()
        try:
            yield
        finally:
            self.wrapped.train(was_training)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.accelerator.device.type == "cuda" and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _log_probs(self, model: Any, mb: MicroBatch, entropy: bool = False) -> tuple[Tensor, Tensor | None]:
        """Per-response-token log-probs ``[N]`` (and entropies) of a packed micro-batch."""
        mb = mb.to(self.accelerator.device)
        with self._autocast():
            # No attention mask and no cache: transformers then reads the restarting position_ids
            # as packed sequences. Logits only where they predict a response token.
            out = model(input_ids=mb.input_ids, position_ids=mb.position_ids, use_cache=False,
                        logits_to_keep=mb.logit_positions)
        logits = out.logits[0]
        if self.cfg.temperature != 1.0:
            # In place: [tokens, vocab] is the largest tensor of the step, and lm_head's backward
            # needs its input, not this output.
            logits = logits.div_(self.cfg.temperature)
        logp = ca.token_log_probs(logits, mb.targets)
        ent = None
        if entropy:
            with torch.no_grad():
                ent = ca.entropy_from_logits(logits.detach())
        return logp, ent

    @torch.no_grad()
    def _score(self, plan: Plan, sums: _Sums) -> dict[str, Any]:
        """Old (and reference, and x̃) log-probs per sequence, the loss masks, the global counts."""
        old: dict[int, Tensor] = {}
        ref: dict[int, Tensor] = {}
        for mb in (mb for mbs in plan.train for mb in mbs):
            logp, _ = self._log_probs(self.wrapped, mb)
            if self.ref_model is not None:
                ref_logp, _ = self._log_probs(self.ref_model, mb)
            if not mb.dummy:
                old.update(zip(mb.seqs, logp.split(mb.lengths)))
                if self.ref_model is not None:
                    ref.update(zip(mb.seqs, ref_logp.split(mb.lengths)))
        keep = {i: torch.ones_like(lp, dtype=torch.bool) for i, lp in old.items()}
        if self.cfg.template_ratio_mask is not None:
            low, high = self.cfg.template_ratio_mask
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

    def _accumulate(self, mbs: list[MicroBatch], old: dict[str, Any], adv: Tensor, counts: Sequence[float],
                    sums: _Sums) -> None:
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
                old_rows = stack_rows([old["old"][i] for i in mb.seqs])
                mask = stack_rows([old["keep"][i] for i in mb.seqs], fill=False) & resp_mask
                pg, stats = policy_loss(logp_rows, old_rows, adv[mb.seqs], mask, clip_low=cfg.clip_low,
                                        clip_high=cfg.clip_high, dual_clip=cfg.dual_clip)
                loss = ca.aggregate_loss(pg, mask, cfg.loss_agg, global_tokens=tokens, global_seqs=n_seqs)
                sums.add("pg_loss", loss.item())
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

    def _optimizer_step(self, sums: _Sums) -> None:
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else math.inf
        norm = self.accelerator.clip_grad_norm_(self.wrapped.parameters(), max_norm)
        # DeepSpeed clips inside its own step and may report no norm here.
        grad_norm = float(norm) if norm is not None else math.nan
        finite = norm is None or math.isfinite(grad_norm)
        if finite:  # a non-finite gradient would poison AdamW's moments: skip that update
            self.optimizer.step()
            self.global_step += 1
        # Every process sees the same (all-reduced) norm, so all take the same branch.
        sums.add("grad_norm", grad_norm if math.isfinite(grad_norm) else 0.0)
        sums.add("updates", float(finite))
        sums.add("skipped", float(not finite))
        self.optimizer.zero_grad(set_to_none=True)

    def _metrics(self, rollouts: Sequence[Any], plan: Plan, adv: Tensor, sums: _Sums, lr: float) -> dict[str, float]:
        # Counts that every process holds whole (rewards, lengths) were not reduced; sums are.
        n = self.accelerator.num_processes
        s, lo, hi = sums.sum, sums.min, sums.max
        rewards = torch.tensor([float(r.reward) for r in rollouts])
        lengths = torch.tensor([float(len(x.response_ids)) for x in plan.seqs])
        updates = max(s.get("updates", 0.0) / n, 1.0)
        n_mini = max(len(plan.train), 1)
        tokens = max(s["tokens"], 1.0)
        m: dict[str, float] = {
            "training/step": self.global_step,
            "training/train_steps": self.train_steps,
            "actor/lr": lr,
            "actor/pg_loss": s["pg_loss"] / n_mini,
            "actor/pg_clipfrac": s["clipfrac"] / tokens,
            "actor/pg_clipfrac_lower": s["clipfrac_lower"] / tokens,
            "actor/ppo_kl": s["ppo_kl"] / tokens,
            "actor/grad_norm": s.get("grad_norm", 0.0) / n / updates,
            "actor/skipped_updates": s.get("skipped", 0.0) / n,
            "actor/mini_batches": n_mini,
            "actor/loss_tokens": s["tokens"],
            "critic/rewards/mean": rewards.mean().item(),
            "critic/advantages/mean": adv.mean().item(),
            "critic/advantages/max": adv.max().item(),
            "critic/advantages/min": adv.min().item(),
            "frac_reward_zero_std": ca.frac_zero_std(rewards, [r.id for r in rollouts]),
            "response_length/mean": lengths.mean().item(),
            "response_length/max": lengths.max().item(),
            "response_length/clip_ratio": sum(r.finish_reason == "length" for r in rollouts) / len(rollouts),
            "perf/micro_batches": s["micro_batches"],
            "perf/max_tokens_per_micro_batch": hi["micro_batch_tokens"],
        }
        if self.cfg.log_entropy:
            m["actor/entropy"] = s["entropy"] / max(s["entropy_tokens"], 1.0)
        if self.ref_model is not None:
            m["actor/kl_loss"] = s["kl_loss"] / n_mini
        if self.cfg.template_ratio_mask is not None:
            # Over the tokens of templated rollouts, the only ones whose ratio is not exactly 1.
            n_ratio = s["ratio/tokens"]
            m["actor/template_ratio/tokens"] = n_ratio
            m["actor/template_ratio/mean"] = s["ratio/sum"] / n_ratio if n_ratio else 1.0
            m["actor/template_ratio/min"] = lo["ratio/min"] if n_ratio else 1.0
            m["actor/template_ratio/max"] = hi["ratio/max"] if n_ratio else 1.0
            m["actor/template_ratio/masked_frac"] = s["ratio/dropped"] / n_ratio if n_ratio else 0.0
        if torch.cuda.is_available() and self.accelerator.device.type == "cuda":
            m["perf/max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
        return m
