"""The gold scan: math-verify's reading of every benchmark gold, checked against a plain reading."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from p2o_cli.evaluation.goldscan import check_gold, plain_number, scan_golds

NUMBERS: list[tuple[str, Fraction | None]] = [
    ("-3", Fraction(-3)),
    ("1,000", Fraction(1000)),
    ("1{,}000", Fraction(1000)),
    ("4.5e33", Fraction(45) * 10**32),
    ("-1./3", Fraction(-1, 3)),
    (r"\frac{7}{4}", Fraction(7, 4)),
    (r"-\dfrac{1}{2}", Fraction(-1, 2)),
    (".0000672", Fraction(672, 10**7)),
    ("x+1", None),
    ("1,2", None),
    ("3/0", None),
]


@pytest.mark.parametrize(("gold", "value"), NUMBERS)
def test_plain_number(gold: str, value: Fraction | None) -> None:
    assert plain_number(gold) == value


def test_check_gold_flags() -> None:
    assert check_gold("4.5e33", normalize=False)[1] == "value"  # 4.5*E*33
    assert check_gold("4.5e33")[1] is None
    assert check_gold("-1./3", normalize=False)[1] == "unparsed"
    assert check_gold("np.arcsin(10/13)")[1] == "unparsed"
    assert check_gold("(1,5),(2,6)")[1] == "pairs-as-intervals"
    assert check_gold("52_8")[1] == "ignores-digits"  # the base is dropped
    assert check_gold(r"\frac{\sqrt{3}}{2}")[1] is None


@pytest.mark.timeout(600)
def test_scan_of_the_six_benchmarks(shared_data: Path) -> None:
    """Every gold math-verify misreads after p2o's rewrites is one we have explained."""
    report = scan_golds(str(shared_data / "bench" / "normalized"))
    assert sum(report.golds.values()) == 30 + 30 + 40 + 500 + 272 + 675
    assert report.unexplained == []
    assert len(report.flags) == 26
    raw = scan_golds(str(shared_data / "bench" / "normalized"), ["minerva_math"], normalize=False)
    assert sum(f.reason == "value" for f in raw.flags) == 58  # exponent notation read as products of e
