"""Number spellings math-verify misreads, rewritten before verification (both graders)."""

from __future__ import annotations

import logging

import pytest

from p2o_cli.normalize import normalize_numbers
from p2o_cli.reward import score_response

logging.getLogger("math_verify").setLevel(logging.ERROR)

REWRITES: list[tuple[str, str]] = [
    ("4.5e33", r"4.5 \times 10^{33}"),
    ("1e-3", r"1 \times 10^{-3}"),
    ("3e6", r"3 \times 10^{6}"),
    ("2.7778E-6", r"2.7778 \times 10^{-6}"),
    ("1e+05", r"1 \times 10^{5}"),
    ("3.e8", r"3 \times 10^{8}"),
    ("1.70e4", r"1.7 \times 10^{4}"),  # the mantissa's trailing zero goes too
    ("-1./3", "-1/3"),
    ("-3./2", "-3/2"),
    ("The answer is 5.", "The answer is 5"),
    ("２０４", "204"),
    ("－１２．５", "-12.5"),
    ("204.000", "204"),
    ("1.50", "1.5"),
    ("56.0", "56"),
    (r"\boxed{4.5e33}", r"\boxed{4.5 \times 10^{33}}"),
    # left alone: Euler's number, subscripts, macros, repeating decimals, inner zeros
    ("2e", "2e"),
    ("3e^{x}", "3e^{x}"),
    ("x_1e2", "x_1e2"),
    (r"\sec3", r"\sec3"),
    (r"0.\overline{3}", r"0.\overline{3}"),
    ("10.05", "10.05"),
    ("100", "100"),
]

# (boxed prediction, gold, reward) under the strict grader; each scored 0 before the rewrite
# except where noted.
STRICT: list[tuple[str, str, float]] = [
    (r"\boxed{4.5 \times 10^{33}}", "4.5e33", 1.0),
    (r"\boxed{4.5e33}", r"4.5 \times 10^{33}", 1.0),
    (r"\boxed{4.6 \times 10^{33}}", "4.5e33", 0.0),
    (r"\boxed{0.001}", "1e-3", 1.0),
    (r"\boxed{10^{-3}}", "1e-3", 1.0),
    (r"\boxed{3000000}", "3e6", 1.0),
    (r"\boxed{-\frac{1}{3}}", "-1./3", 1.0),
    (r"\boxed{-\frac{2}{3}}", "-1./3", 0.0),
    (r"\boxed{２０４}", "204", 1.0),
    (r"\boxed{204}", "２０４", 1.0),
    (r"\boxed{204.000}", "204", 1.0),  # math-verify alone already accepts this one
    (r"\boxed{2e}", "2e", 1.0),  # Euler's number still is one (1.0 before too)
]


@pytest.mark.parametrize(("text", "expected"), REWRITES)
def test_rewrites(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize(("response", "gold", "expected"), STRICT)
def test_strict_reward_reads_the_rewritten_numbers(response: str, gold: str, expected: float) -> None:
    assert score_response(response, gold).reward == expected
