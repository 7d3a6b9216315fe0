"""Number spellings math-verify misreads, rewritten before verification (both graders)."""

from __future__ import annotations

import logging

import pytest

from p2o_cli.reward.normalize import normalize_numbers, small_numbers_differ
from p2o_cli.reward.verify import score_response

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
    (r"\boxed{2e}", "2e", 1.0),
    # math-verify rounds floats to 6 decimals: every number below 5e-7 equalled every other
    (r"\boxed{0}", "1e-8", 0.0),
    (r"\boxed{2 \times 10^{-8}}", "1e-8", 0.0),
    (r"\boxed{10^{-8}}", "1e-8", 1.0),
    (r"\boxed{1.33 \times 10^{-27}}", "1.325e-27", 0.0),
    (r"\boxed{1.325 \times 10^{-27}}", "1.325e-27", 1.0),
    (r"\boxed{0.000067}", ".0000672", 0.0),  # 1.0 before: equal to 6 decimals
    (r"\boxed{6.72 \times 10^{-5}}", ".0000672", 1.0),
    (r"\boxed{0.333333}", r"\frac13", 1.0),  # above 1e-3 nothing changes
    (r"\boxed{4.48 \times 10^{33}}", "4.5e33", 0.0),  # Euler's number still is one (1.0 before too)
]


@pytest.mark.parametrize(("text", "expected"), REWRITES)
def test_rewrites(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


@pytest.mark.parametrize(("response", "gold", "expected"), STRICT)
def test_strict_reward_reads_the_rewritten_numbers(response: str, gold: str, expected: float) -> None:
    assert score_response(response, gold).reward == expected


def test_small_numbers_compare_at_their_own_scale() -> None:
    assert small_numbers_differ(1.325e-27, 1.326e-27)
    assert not small_numbers_differ(1.325e-27, 1.3250001e-27)
    assert small_numbers_differ(1e-8, 0.0)
    assert not small_numbers_differ(0.5, 0.4999)  # not small: left to math-verify
    assert not small_numbers_differ("x", 1e-9)  # not a number: left to math-verify
