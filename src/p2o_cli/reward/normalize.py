"""Rewrite number spellings that math-verify misreads, before any answer is verified.

math-verify reads ``4.5e33`` as the product 4.5·e·33 (``e`` is Euler's number), gives up on
``-1./3`` and on full-width digits (``２０４``). Minerva's golds use exactly these forms (61 of
its 272 answers), so without this step a correct ``4.5 \\times 10^{33}`` scores 0. The same
rewrite runs on golds and predictions, for the training reward and for evaluation alike.
"""

from __future__ import annotations

import math
import re
from typing import Any

# Full-width digits and the number punctuation that comes with them (U+FF0B..U+FF19).
_FULL_WIDTH = str.maketrans({chr(0xFF10 + d): str(d) for d in range(10)} | {
    "\uff0b": "+", "\uff0c": ",", "\uff0d": "-", "\uff0e": ".", "\uff0f": "/",
})
# A decimal literal with an exponent: 4.5e33, 1e-3, 2.7778E-6, 3.e8. Not part of a word, a
# subscript or a longer number, so `2e` (2·e), `x_1e2` and `\sec3` are left alone.
_SCIENTIFIC = re.compile(r"(?<![A-Za-z0-9_.\\])(\d+\.?\d*|\.\d+)[eE]([+-]?)(\d+)(?![A-Za-z0-9_.])")
# A point that ends a number without decimals: `-1./3`, `5.` at the end. Not `0.\overline{3}`.
_DANGLING_POINT = re.compile(r"(?<=\d)\.(?=\s*(?:[/*+\-)\]},;]|\\times|\\cdot|$))")
# Zeros after the last significant decimal: 204.000 -> 204, 1.50 -> 1.5.
_TRAILING_ZEROS = re.compile(r"(?<![\d.])(\d+)\.(\d*?)0+(?![\d.])")


def _scientific(match: re.Match[str]) -> str:
    mantissa, sign, exponent = match.groups()
    mantissa = mantissa.rstrip(".") or "0"
    if mantissa.startswith("."):
        mantissa = "0" + mantissa
    digits = exponent.lstrip("0") or "0"
    power = "-" + digits if sign == "-" and digits != "0" else digits
    return f"{mantissa} \\times 10^{{{power}}}"


def _trailing_zeros(match: re.Match[str]) -> str:
    whole, decimals = match.groups()
    return f"{whole}.{decimals}" if decimals else whole


def normalize_numbers(text: str) -> str:
    """``text`` with full-width digits, exponent notation and idle decimal points rewritten:
    ``4.5e33`` -> ``4.5 \\times 10^{33}``, ``-1./3`` -> ``-1/3``, ``２０４.000`` -> ``204``."""
    text = text.translate(_FULL_WIDTH)
    text = _SCIENTIFIC.sub(_scientific, text)
    text = _DANGLING_POINT.sub("", text)
    return _TRAILING_ZEROS.sub(_trailing_zeros, text)


# A "$" left at either end of a gold, and a sentence's full stop after it (OlympiadBench's
# final_answer is "$...$" split on "$,$", which leaves "(-\\infty, 0) \\cup\\{1\\}$.").
_STRAY_DOLLARS = re.compile(r"^\s*\$+|(?<!\\)\$+\s*\.?\s*$")


def tidy_gold(gold: str) -> str:
    """``gold`` without stray ``$`` at its ends (and a full stop after a trailing one)."""
    return _STRAY_DOLLARS.sub("", gold)


# math-verify compares floats after rounding both to 6 decimals, so every number below 5e-7
# equals every other (and 0): once 1.325e-27 is read as a number, "0" would match it. Below
# this size we compare at the gold's own scale instead, to the same 7 significant digits
# that 6-decimal rounding gives a number between 1 and 10.
SMALL = 1e-3


def small_numbers_differ(gold: Any, pred: Any) -> bool:
    """Whether two numbers (sympy or Python) differ when the gold is below SMALL in size;
    False for anything that is not a pair of real numbers."""
    try:
        g, p = complex(gold), complex(pred)
    except (TypeError, ValueError, AttributeError):
        return False
    if g.imag or p.imag or g.real == 0 or abs(g.real) >= SMALL:
        return False
    scale = 10.0 ** -math.floor(math.log10(abs(g.real)))
    return round(g.real * scale, 6) != round(p.real * scale, 6)
