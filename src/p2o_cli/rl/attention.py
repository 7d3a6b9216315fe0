"""Which micro-batch shape an attention implementation makes cheap (see rl/batch.py).

Packing several sequences into one row with restarting ``position_ids`` is cheap only where the
kernel takes sequence boundaries from them (varlen); sdpa/eager get a block-diagonal mask over
the whole row and cost O(row²), so there each row holds one padded sequence — or one prompt and
its group's responses, where :class:`RowCost` counts that as fewer FLOPs than a row each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PACKING_MODES = ("auto", "padded", "packed")
# Attention implementations whose kernels take sequence boundaries from restarting position_ids
# (cu_seqlens), so a packed row costs Σ seq², not row². flex_attention builds a block-sparse mask
# from them, which skips cross-sequence blocks; it is only fast compiled, i.e. on a GPU.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4")


def is_varlen_attention(attn_implementation: str | None, device_type: str = "cpu") -> bool:
    """Whether packing several sequences into one row is cheap with this attention implementation."""
    impl = (attn_implementation or "").lower()
    if impl in VARLEN_ATTENTION or impl.endswith(("flash-attn2", "flash-attn3", "flash_attn")):
        return True
    return impl == "flex_attention" and device_type == "cuda"


def attention_path(packing: str, attn_implementation: str | None, device_type: str = "cpu") -> str:
    """``"packed"`` (varlen rows) or ``"padded"`` (one sequence per row) for a ``--packing`` mode."""
    if packing not in PACKING_MODES:
        raise ValueError(f"--packing must be one of {', '.join(PACKING_MODES)}, got {packing!r}")
    if packing != "auto":
        return packing
    return "packed" if is_varlen_attention(attn_implementation, device_type) else "padded"


# A shared-prompt row's mask is a dense [L, L] boolean per row; beyond this length the mask's
# memory and the quadratic attention outweigh any prompt tokens saved.
SHARED_ROW_MAX_TOKENS = 4096


@dataclass(frozen=True)
class RowCost:
    """Forward FLOPs of one layer: per token through the linear layers, per attended (query, key) pair.

    Decides whether the K rollouts of a prompt train in one row that holds the prompt once (fewer
    tokens, but a dense masked attention over the whole row) or in K rows of their own (every
    token of the prompt K times, causal attention that skips the upper triangle).
    """

    per_token: float
    per_pair: float

    @classmethod
    def of(cls, config: Any) -> RowCost:
        """From a transformers decoder config (attention projections + a gated MLP)."""
        config = config.get_text_config() if hasattr(config, "get_text_config") else config  # multimodal: its LM
        hidden = config.hidden_size
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        inter = getattr(config, "intermediate_size", None) or 4 * hidden
        linear = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden + 3 * hidden * inter
        return cls(per_token=2.0 * linear, per_pair=4.0 * heads * head_dim)

    def separate(self, prompt: int, responses: Sequence[int]) -> float:
        return sum((prompt + r) * self.per_token + (prompt + r) ** 2 / 2 * self.per_pair for r in responses)

    def shared(self, prompt: int, responses: Sequence[int]) -> float:
        width = prompt + sum(responses)
        return width * self.per_token + width**2 * self.per_pair

    def shares(self, prompt: int, responses: Sequence[int]) -> bool:
        """Whether one shared-prompt row is cheaper than a row per response (and short enough)."""
        return (len(responses) > 1 and prompt + sum(responses) <= SHARED_ROW_MAX_TOKENS
                and self.shared(prompt, responses) < self.separate(prompt, responses))
