"""`p2o data scan-golds`: which benchmark golds math-verify reads differently from a mathematician.

Each gold is parsed the way the reward parses it (normalize.py first, unless ``raw``) and
flagged when:
- math-verify returns no expression at all (``unparsed``);
- the gold is a plain number (``-3``, ``1,000``, ``4.5e33``, ``-1./3``, ``\\frac{7}{4}``) and the
  parse has another value or free symbols (``value``), read independently with ``fractions``;
- the gold holds prose (``where $b$ is an arbitrary integer``) that no expression can keep (``prose``);
- a list of parenthesised pairs came back holding intervals (``pairs-as-intervals``);
- the parse does not verify against itself (``self``), or still verifies once one of the
  gold's digits is changed, so part of the gold was lost (``ignores-digits``).
Golds we checked by hand and could not fix are in EXPLAINED with the reason; the scan's
headline is how many flagged golds are *not* explained, which should be 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from math_verify import verify

from ..reward.normalize import normalize_numbers, tidy_gold
from ..reward.verify import answers_match, parse_gold, score_response
from .benchmarks import load_benchmark, resolve_bench_names

# (benchmark, gold as loaded) -> why it stays misread. Checked by hand on the offline files.
EXPLAINED: dict[tuple[str, str], str] = {
    ("minerva_math", "np.arcsin(10/13)"): "the gold is Python code; math-verify parses no "
    "`np.` prefix. Only a prediction written the same way scores (string match under --grader qwen).",
    ("minerva_math", "\\frac{dM}{dt}=\\frac{10^{5} L_{\\odot}}{0.007 c^{2} M_{\\odot}^{6}} M^{6}"):
    "`L_{\\odot}` (solar luminosity) is not LaTeX that math-verify parses; the equation is lost.",
    ("minerva_math", "E_{1},E_{2}"): "a list of two named energies; math-verify reads no list "
    "of subscripted capitals here.",
    ("minerva_math", "\\hbar \\omega(v+1 / 2)-\\frac{E_{0}^{2} e^{2}}{2 m \\omega^{2}}"): "math-verify "
    "turns a capital E into Euler's number and then fails on its subscript; what is left reads "
    "as 2, so a bare \"2\" would score. No rewrite we tried keeps the expression.",
    ("minerva_math", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}"): "the same E_{k} failure; reads "
    "as 2/3, so a bare \"2/3\" would score.",
    ("minerva_math", "m_{p} c^{2}\\left(\\gamma^{2}-1\\right) \\sin ^{2} \\theta"): "math-verify reads "
    "\\gamma as the gamma function, so (\\gamma^2 - 1) becomes complex infinity; only the same "
    "text (string match under --grader qwen) scores.",
    ("math500", "864 \\mbox{ inches}^2"): "the unit (square inches) is dropped, as units are; "
    "the changed digit was the unit's exponent.",
    ("math500", "15\\mbox{ cm}^2"): "as above: the unit's exponent, not the number.",
    ("olympiadbench", "m_{\\max }=n^{2}-n-1"): "`\\max` inside a subscript stops the parse.",
    ("olympiadbench", "t(0,4]"): ("a damaged gold (`t \\in (0,4]` lost its `\\in`); the "
                                  "interval (0,4] is meant, math-verify sees a function call."),
    ("olympiadbench", ("f(x)=a x+b$, where $b$ is an arbitrary integer, and $a$ is an arbitrary "
                       "positive integer with $\\mho(a)=0")): "prose conditions on a and b; no expression holds them.",
}
PAIRS_PROBED = ("math-verify reads a pair (a, b) with a < b as an open interval, and a prediction "
                "the same way: probed, the pairs in reverse order still score 1, one pair's "
                "coordinates swapped or the first pair left out score 0.")

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d*)?(?:[eE][+-]?\d+)?")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")
_PROSE = re.compile(r"[A-Za-z]{3,} [A-Za-z]{2,} [A-Za-z]{3,}")
_PAIRS = re.compile(r"\)\s*\$?\s*,\s*\$?\s*\\?(?:left)?\(")
_DIGIT = re.compile(r"\d")
_PAIR = re.compile(r"\(([^(),]+),([^(),]+)\)")


@dataclass
class Flag:
    bench: str
    id: str
    gold: str
    parsed: str
    reason: str
    explained: str | None = None


@dataclass
class ScanReport:
    golds: dict[str, int] = field(default_factory=dict)  # benchmark -> golds scanned
    flags: list[Flag] = field(default_factory=list)

    @property
    def unexplained(self) -> list[Flag]:
        return [f for f in self.flags if f.explained is None]


# Golds of a kind rather than one gold: (pattern, why).
EXPLAINED_KINDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d+_\{?\d+\}?"), ("a numeral in base b (52_8): math-verify keeps the digits "
                                     "and drops the base, which the question fixes; the digits are what is compared.")),
)


def explain(bench: str, gold: str) -> str | None:
    """Why a flagged gold is left as it is, or None if nobody has looked at it."""
    if (bench, gold) in EXPLAINED:
        return EXPLAINED[(bench, gold)]
    return next((why for pattern, why in EXPLAINED_KINDS if pattern.fullmatch(gold.strip())), None)


def plain_number(gold: str) -> Fraction | None:
    """The value of a gold that is just a number, as anyone reads it; None for anything else."""
    text = gold.strip().replace("{,}", ",").replace("\\!", "")
    frac = _FRAC.fullmatch(text)
    if frac:
        sign, num, den = frac.groups()
        return None if int(den) == 0 else Fraction(int(num), int(den)) * (-1 if sign else 1)
    parts = text.split("/")
    if len(parts) > 2 or not all(p.strip() and _PLAIN_NUMBER.fullmatch(p.strip()) for p in parts):
        return None
    try:
        values = [Fraction(p.strip().replace(",", "").rstrip(".") or "0") for p in parts]
    except (ValueError, ZeroDivisionError):
        return None
    if len(values) == 2:
        return None if values[1] == 0 else values[0] / values[1]
    return values[0]


def _value_differs(parsed: object, expected: Fraction) -> bool:
    try:
        if getattr(parsed, "free_symbols", None):
            return True
        got = complex(parsed)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    return got.imag != 0 or abs(got.real - float(expected)) > 1e-9 * max(1.0, abs(float(expected)))


def check_gold(gold: str, normalize: bool = True) -> tuple[str, str | None]:
    """(math-verify's reading as text, the reason it is flagged or None)."""
    text = normalize_numbers(tidy_gold(gold)) if normalize else gold
    parsed = parse_gold(text)
    expr = parsed[0] if parsed else None
    shown = str(expr) if expr is not None else "-"
    if expr is None or isinstance(expr, str):
        return shown, "unparsed"
    expected = plain_number(gold)
    if expected is not None and _value_differs(expr, expected):
        return shown, "value"
    if _PROSE.search(re.sub(r"\\[A-Za-z]+", " ", gold)):
        return shown, "prose"
    if _PAIRS.search(gold) and "Interval" in shown:
        return shown, "pairs-as-intervals"
    if not verify(parsed, parsed, timeout_seconds=None):
        return shown, "self"
    # A reading that survives a change of one of the gold's digits has lost part of the gold.
    for digit in _DIGIT.finditer(text):
        changed = text[: digit.start()] + str((int(digit.group()) + 1) % 10) + text[digit.end() :]
        if answers_match(changed, gold):  # as the reward judges it, small numbers included
            return shown, "ignores-digits"
    return shown, None


def pairs_read_consistently(gold: str) -> bool:
    """For a gold listing pairs: reordered pairs match it, a swapped or missing pair does not."""

    pairs = _PAIR.findall(gold.replace("$", ""))
    if len(pairs) < 2:
        return False
    def box(items: Sequence[tuple[str, str]]) -> str:
        return "\\boxed{" + ", ".join(f"({a},{b})" for a, b in items) + "}"
    unequal = [i for i, (a, b) in enumerate(pairs) if a.strip() != b.strip()]
    if not unequal:
        return False  # swapping would change nothing: the probe could not fail
    swapped = list(pairs)
    swapped[unequal[0]] = pairs[unequal[0]][::-1]
    return (score_response(box(pairs[::-1]), gold).reward == 1.0
            and score_response(box(swapped), gold).reward == 0.0
            and score_response(box(pairs[1:]), gold).reward == 0.0)


def scan_golds(data_dir: str | None, benches: Sequence[str] = ("all",), normalize: bool = True) -> ScanReport:
    """Check every gold of the named benchmarks (local files under ``data_dir``, else the hub)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    report = ScanReport()
    for name in resolve_bench_names(benches):
        _, problems = load_benchmark(name, data_dir)
        report.golds[name] = len(problems)
        for problem in problems:
            shown, reason = check_gold(problem.answer, normalize)
            if reason is not None:
                why = explain(name, problem.answer)
                if reason == "pairs-as-intervals" and pairs_read_consistently(problem.answer):
                    why = PAIRS_PROBED
                report.flags.append(Flag(name, problem.id, problem.answer, shown, reason, why))
    return report
