"""The train step's options (``p2o train-step``, the ``[train]`` table of ``p2o run``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import Config, internal, option, seed_option, temperature_option
from ..errors import ConfigError
from .attention import PACKING_MODES
from .registry import ADVANTAGE_ESTIMATORS, KL_PENALTIES, POLICY_LOSSES

DISTILL_MODES = ("original", "none")
TEMPLATED_BASELINES = ("group", "plain")
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
DEFAULT_RATIO_MASK = (0.01, 10.0)
# The LR schedule's options: a checkpoint stores them, and what continues it takes them (see trainer_state).
SCHEDULE = ("lr", "warmup_ratio", "total_steps", "min_lr_ratio")


@dataclass
class TrainConfig(Config):
    PANEL = "Training"

    # LR schedule, in train steps (rollout batches): linear warmup, then cosine to min_lr_ratio·lr.
    # At most 1: an AdamW step moves each weight by about lr, and far above it the step overflows.
    lr: float = option(1e-6, min=0.0, max=1.0,
                       help="Peak learning rate. Where the model is a checkpoint that stores its LR schedule, the "
                            "schedule options not given take its values.")
    warmup_ratio: float = option(0.05, min=0.0, max=1.0, help="Linear warmup share of the schedule.")
    total_steps: int = option(1000, min=1, help="Train steps (rollout batches) the cosine schedule spans.")
    min_lr_ratio: float = option(0.0, min=0.0, max=1.0, help="Final LR as a share of --lr.")
    weight_decay: float = option(0.01, min=0.0, help="AdamW weight decay.")
    adam_betas: tuple[float, float] = internal((0.9, 0.999))
    adam_eps: float = option(1e-8, above=0.0, help="AdamW epsilon.")
    max_grad_norm: float = option(1.0, min=0.0, help="Gradient clipping norm; 0 = off (the norm is still logged).")
    mini_batches: int = option(2, min=1, help="Optimizer updates per rollout batch (whole groups each; "
                                              "2 = one-step off-policy).")
    max_tokens_per_micro_batch: int = option(
        16384, min=2, help="Token budget of one forward/backward (padded rows count their padding; bounds peak memory)."
    )
    # "packed" under sdpa/eager is correct but costs O(row²): a block-diagonal mask over the whole row.
    packing: str = option(
        "auto",
        choices=PACKING_MODES,
        help="Micro-batch rows: auto (several sequences per row only under varlen attention, "
        "flash-attention; else length-sorted padded rows, a group's responses sharing one row "
        "with their prompt where that costs fewer FLOPs), padded (one sequence per row) or packed.",
    )
    gradient_checkpointing: bool = option(False, help="Recompute activations in backward.")
    # Objective.
    distill: str = option(
        "original",
        choices=DISTILL_MODES,
        help="Train templated rollouts on: original (x, context distillation) or none (x̃, the ablation).",
    )
    template_ratio_mask: str = option("0.01,10", metavar="LOW,HIGH", help="Zero the loss where π(y|x)/π(y|x̃) is "
                                                                          "outside [LOW, HIGH]; none = off.")
    adv_estimator: str = option("grpo", registry=ADVANTAGE_ESTIMATORS, help="Advantage estimator.")
    std_norm: bool = option(True, help="Divide GRPO advantages by the group's std (estimators that normalise).")
    # What a templated group's advantages are measured against: "group" (the paper: the K
    # templated rollouts themselves) or "plain" (those K together with the plain rewards that
    # made the problem hard). Under "group", a trait every templated rollout shares — such as
    # the reasoning the template switched on — gets advantages summing to zero, so it is not
    # distilled; "plain" credits it against the policy without the template.
    templated_baseline: str = option("group", choices=TEMPLATED_BASELINES,
                                     help="Templated groups' baseline: group (the K templated rollouts) or plain "
                                          "(with the plain rewards that made the problem hard).")
    policy_loss: str = option("ppo_clip", registry=POLICY_LOSSES, help="Policy loss.")
    clip_low: float = option(0.2, min=0.0, help="PPO ratio clip below 1.")
    clip_high: float = option(0.2, min=0.0, help="PPO ratio clip above 1; clip-higher when above --clip-low.")
    dual_clip: float = option(3.0, min=0.0, help="Dual-clip bound for negative advantages; 0 = off.")
    loss_agg: str = option("token-mean", choices=LOSS_AGG_MODES, help="How token losses become the batch loss.")
    kl_coef: float = option(0.0, min=0.0, help="KL(π‖π_ref) loss coefficient; needs --ref-model.")
    kl_penalty: str = option("k3", registry=KL_PENALTIES, help="Per-token KL estimator.")
    ref_model: str | None = option(None, metavar="PATH", unset="none", help="Reference model directory for --kl-coef.")
    # Log-probs use logits / temperature, as verl and TRL do: the rollouts' sampling temperature,
    # so the trained distribution is the sampled one.
    temperature: float = temperature_option()
    bf16: bool = option(True, help="bf16 autocast on GPU (CPU always runs fp32).")
    attn_implementation: str | None = option(None, metavar="NAME", unset="the model's",
                                             help="Attention kernel: sdpa, eager, flash_attention_2 …")
    log_entropy: bool = option(True, help="Log the policy's token entropy.")
    # Checkpoint format: weights in save_dtype ("auto" = the source model's config dtype when
    # bf16/fp16, else fp32); the optimizer state (and, under bf16, fp32 master weights) only with
    # save_optimizer — without it a chained train-step starts a fresh optimizer.
    save_optimizer: bool = option(True, help="Write the optimizer state (and fp32 master weights when saving bf16) "
                                             "so a chained train-step or a resumed run continues it.")
    save_dtype: str = option("auto", choices=("auto", "float32", "bfloat16", "float16"),
                             help="Dtype of the saved model weights: auto (the model config's), float32, bfloat16.")
    lora_r: int = option(0, min=0, help="LoRA rank (0 = full fine-tuning); needs peft.")
    lora_alpha: float | None = option(None, min=0.0, follows="lora_r", scale=2.0, help="LoRA alpha.")
    lora_target_modules: str = option("all-linear", metavar="MODULES", help="Modules LoRA adapts: all-linear or a "
                                                                           "comma list (q_proj,v_proj).")
    seed: int = seed_option()

    def __post_init__(self) -> None:
        if isinstance(self.template_ratio_mask, (tuple, list)) or self.template_ratio_mask is None:
            self.template_ratio_mask = format_ratio_mask(self.template_ratio_mask)
        super().__post_init__()
        bounds = parse_ratio_mask(self.template_ratio_mask)
        if bounds is not None:
            low, high = bounds
            if not 0.0 < low <= 1.0 <= high or not math.isfinite(high):
                raise ConfigError(f"--template-ratio-mask needs 0 < LOW <= 1 <= HIGH, got {low:g},{high:g}")
            if self.distill == "none" and bounds != DEFAULT_RATIO_MASK:
                raise ConfigError("--distill none trains on x̃, so --template-ratio-mask does not apply")
        if self.kl_coef > 0 and not self.ref_model:
            raise ConfigError("--kl-coef > 0 needs --ref-model")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0 for training, got {self.temperature}")
        if 0 < self.dual_clip <= 1.0:
            raise ConfigError(f"--dual-clip must be > 1 (0 turns it off), got {self.dual_clip}")
        if self.clip_low >= 1.0:
            raise ConfigError(f"--clip-low must be below 1, got {self.clip_low}")
        if self.lora_r > 0 and not self.lora_alpha:
            raise ConfigError(f"--lora-alpha must be greater than 0 with --lora-r, got {self.lora_alpha:g}")

    def check(self) -> None:
        """The names of registered functions and LoRA's needs (these imports import torch)."""
        from . import core_algos as ca
        from .lora import peft_available, target_modules

        if self.lora_r > 0:
            if not peft_available():
                raise ConfigError("--lora-r needs the peft package: pip install 'p2o-cli[lora]'")
            target_modules(self.lora_target_modules)

        for lookup, name in ((ca.get_advantage_estimator, self.adv_estimator), (ca.get_policy_loss, self.policy_loss),
                             (ca.get_kl_penalty, self.kl_penalty)):
            try:
                lookup(name)
            except ValueError as err:
                raise ConfigError(str(err)) from None

    @property
    def ratio_mask(self) -> tuple[float, float] | None:
        """The template ratio mask's bounds; None when off (always off under ``distill="none"``)."""
        return None if self.distill == "none" else parse_ratio_mask(self.template_ratio_mask)

    @property
    def dual_clip_bound(self) -> float | None:
        return self.dual_clip if self.dual_clip > 0 else None

    def schedule(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SCHEDULE}


def parse_ratio_mask(text: str) -> tuple[float, float] | None:
    """``"LOW,HIGH"`` → bounds; ``"none"``/``"off"`` → no mask."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        low, high = (float(p) for p in text.split(","))
    except ValueError:
        raise ConfigError(f"--template-ratio-mask expects LOW,HIGH (e.g. 0.01,10) or none, got {text!r}") from None
    return low, high


def format_ratio_mask(bounds: tuple[float, float] | list[float] | None) -> str:
    return "none" if bounds is None else f"{bounds[0]:g},{bounds[1]:g}"


def warmup_steps(cfg: TrainConfig) -> int:
    """The train steps of the schedule's linear warmup."""
    return int(cfg.warmup_ratio * cfg.total_steps)


def lr_at(cfg: TrainConfig, train_step: int) -> float:
    """LR for the ``train_step``-th rollout batch (0-based): warmup reaches full LR on its last step."""
    lr, total, floor = float(cfg.lr), int(cfg.total_steps), float(cfg.min_lr_ratio)
    warmup = warmup_steps(cfg)
    if train_step < warmup:
        return lr * (train_step + 1) / (warmup + 1)
    progress = min(1.0, (train_step - warmup) / max(1, total - warmup))
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
