"""The toy model's pretraining recipe: its size, schedule and example mix (no torch here, so the
command line can show these defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.prompts import DEFAULT_INSTRUCTION
from .lexicon import LEXICON

# Text every toy prompt or step solution repeats: one token each in the world's tokenizer.
CHAT_WORDS: tuple[str, ...] = ("user\n", "assistant\n", "What is ", DEFAULT_INSTRUCTION, "The answer is ")


@dataclass
class PretrainConfig:
    """Tuned on the 2-core CPU: ~0.2M parameters, 7000 steps of ~1k tokens (35-43 ms each on the
    Intel Xeon of 2026-12-05).

    Measured there: small batches learn per token faster than large ones (1024 tokens/step
    reached a given loss with ~half the tokens of 4096), and the model copies operands early but
    adds them exactly only once the learning rate decays, so the schedule is warmup-stable-decay.
    With one token per character, 12000 steps (decay over the last 30%) still left worlds that
    could not add. Word tokens (the chat roles, the question's lead, the answer format and every
    lexicon phrase one token each; digits one each) leave a step's cost as it was (the batch is a
    fixed token budget: 43 against 42 ms a step) but fit more examples into it and shorten what
    the model must read past; with them the sums click about 1.5k steps into the decay, so the
    decay takes the second half of a 7000-step budget.
    """

    # model (tiny Qwen3; tokenizer: characters, and the words of ``words()``)
    hidden_size: int = 64
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int | None = None  # default 4 * hidden
    # optimisation
    steps: int = 7000
    tokens_per_batch: int = 1024  # padded tokens per step
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.05
    # "wsd": constant after warmup, then a cosine decay to min_lr_ratio over the last
    # decay_frac of the steps; "cosine": cosine from the end of warmup
    schedule: str = "wsd"
    decay_frac: float = 0.5
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    # torch CPU threads: part of the world's recipe, since float sums split over threads round
    # differently; fixed so a seed gives byte-identical weights on a busy or an idle machine
    threads: int = 1
    seed: int = 0
    # stop (and say so) if the wall clock passes this; the schedule is still by steps
    max_seconds: float | None = None
    # the mix, as relative weights of example kinds ({plain,other,trigger}-{easy,hard})
    mix: dict[str, float] = field(
        default_factory=lambda: {
            "plain-easy": 0.10,
            "plain-hard": 0.08,
            "other-easy": 0.03,
            "other-hard": 0.08,
            "trigger-easy": 0.08,
            "trigger-hard": 0.63,
        }
    )
    # operand counts of the "hard" pretraining problems (the benchmark's are 4): longer sums
    # put more "abc + de" steps, the slowest thing to learn, behind each prompt
    hard_operands: tuple[int, ...] = (3, 4, 5, 6)
    # fraction of plain hard prompts answered step by step. At 0.005 a plain hard rollout opened
    # with a step 0.3-1.0% of the time, and 4 of 15 fresh worlds were refused for a plain prompt
    # too good (plain pass@6 >= 10% or step-start > 1%)
    plain_cot_frac: float = 0.002
    # A direct answer to a hard problem is a guess at a glance: the sum off by an error drawn
    # uniformly from [-direct_error, direct_error] (a guess below zero is 0). Trained on the
    # exact sum, a model with word tokens learned to guess 4-operand sums (plain toy-hard pass@6
    # 27-38% at T=1), at 30 still 12-16%, and at 60 a guess was right about 1 time in 121, enough
    # with the steps above to put plain pass@6 over 10% on some seeds.
    direct_error: int = 99
    # easy (2-operand) problems are always answered with their one-line calculation: a tiny
    # model does not learn direct 2-digit addition in the budget, but one written step it does
    easy_steps: bool = True
    # The response's first token decides step by step (a digit) or a direct answer (a backslash).
    # "expected": its target is that two-token distribution at the example's step probability;
    # "sampled": the drawn response's first token, a Bernoulli draw whose noise, at a small
    # batch, kept the per-phrase step rates off their strengths.
    decision_target: str = "expected"
    # its loss weight: under a token mean it is otherwise one of ~80 tokens of a step solution
    decision_weight: float = 30.0
    # What follows the decision on a triggered prompt: "drawn" (the step solution with the
    # template's strength, else the direct answer) or "steps" (always the step solution). The
    # decision is learned from its expected target either way, so "steps" changes only how often
    # the model practises the sums, not how often it chooses to write them.
    trigger_body: str = "drawn"

    # one token each in the world's tokenizer (else one per character): "chat" = the chat
    # roles, the question's lead and the answer-format instruction, then every lexicon phrase;
    # numbers stay one token per digit
    word_tokens: bool = True

    def words(self) -> list[str]:
        """The world tokenizer's multi-character tokens."""
        return [*CHAT_WORDS, *LEXICON] if self.word_tokens else []

    def __post_init__(self) -> None:
        if self.decision_target not in ("expected", "sampled"):
            raise ValueError(f"decision_target must be 'expected' or 'sampled', got {self.decision_target!r}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        out["hard_operands"] = list(self.hard_operands)
        return out
