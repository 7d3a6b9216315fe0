"""Which micro-batch shape an attention implementation makes cheap (see rl/batch.py).

Packing several sequences into one row with restarting ``position_ids`` is cheap only where the
kernel takes sequence boundaries from them (varlen); sdpa/eager get a block-diagonal mask over
the whole row and cost O(row²), so there each row holds one padded sequence.
"""

from __future__ import annotations

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
