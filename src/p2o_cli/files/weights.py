"""Weight files checked before any model loads: a truncated save or download is named in one line.

Reads only the safetensors header (8 bytes and its JSON), so the check costs microseconds and
needs neither torch nor safetensors; loading code then never fails deep inside with a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import P2OError
from .outputs import recover_swap


def verify_safetensors(path: Path) -> None:
    """The file's header parses and its size is what the header promises (ValueError otherwise).

    Reads 8 bytes and the header only, so a truncated save or download is named before any
    model loads, instead of failing deep inside the loader with a traceback.
    """
    size = path.stat().st_size
    problem = None
    with open(path, "rb") as fh:
        head = fh.read(8)
        header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
        if header_len < 2 or 8 + header_len > size:
            problem = "its header is cut short"
        else:
            try:
                header = json.loads(fh.read(header_len))
                end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                problem = "its header is not valid safetensors JSON"
            else:
                if 8 + header_len + end != size:
                    problem = f"it holds {size:,} bytes where its header promises {8 + header_len + end:,}"
    if problem:
        raise P2OError(f"{path}: truncated or corrupt safetensors file ({problem}); save or download it again")


def check_checkpoint_files(model_dir: str | Path) -> None:
    """Restore a checkpoint a kill left in its swap window, then verify its safetensors files."""
    root = Path(model_dir)
    recover_swap(root)
    if root.is_dir():
        for path in sorted(root.glob("*.safetensors")):
            verify_safetensors(path)
