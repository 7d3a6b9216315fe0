"""Binary verifiable reward: an extracted answer, judged by math-verify against the gold.

Two graders: ``strict`` (the training reward) takes the last ``\\boxed{}``; ``qwen`` reads the
answer the way the Qwen2.5-Math evaluation suite does (grading.py), unboxed answers included.
Both rewrite number spellings math-verify misreads (normalize.py) before verifying.

``score_response`` scores one response in-process, with no time limit. ``RewardScorer`` scores
batches in worker processes with a per-item time limit, so no response can hang or crash
training: math-verify hands answers to sympy, which can spend hours on ``9^{9^{9^{9^9}}}``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from decimal import Decimal

from ..errors import P2OError
from .normalize import normalize_numbers, small_numbers_differ, tidy_gold

# 10x the longest gold answer in our data (210 chars); longer boxes are degenerate generations
# that would only burn a timeout each.
MAX_PRED_CHARS = 2000
_CACHE_LIMIT = 500_000
GRADERS = ("strict", "qwen")

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_TOKEN = re.compile(r"[^\s$]*")
_INTEGER = re.compile(r"-?\d{1,30}")
_DECIMAL = re.compile(r"-?\d+(?:\.\d{1,6})?")
_MATCH_CACHE = 65_536
_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")


@dataclass(frozen=True)
class RewardResult:
    reward: float
    pred: str | None
    components: dict[str, float] | None = None  # each reward's value, when several make up ``reward``


def extract_boxed(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed TOKEN``), in order."""
    found: list[str] = []
    pos = 0
    while (m := _BOX.search(text, pos)) is not None:
        i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            end = _closing_brace(text, i)
            if end is None:  # truncated generation: the box never closes
                break
            found.append(text[i + 1 : end])
            pos = end + 1
        else:
            token = _TOKEN.match(text, i).group(0).rstrip(".,;")
            if token and i > m.end():  # `\boxed5` is not LaTeX; `\boxed 5` is
                found.append(token)
            pos = i + len(token) if token else i
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last closed ``\\boxed{}`` (or ``\\fbox{}``), None if there is none.

    The one extractor for data and reward: a solution field's gold (``--answer-field solution``,
    Minerva's golds) is read exactly as a response's answer is.
    """
    boxes = extract_boxed(text)
    return boxes[-1] if boxes else None


def _closing_brace(text: str, start: int) -> int | None:
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":  # `\{`, `\}` are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _as_word(answer: str) -> str | None:
    """The answer as a lower-case word if it is one (``Yes``, ``\\text{Evelyn}``), else None.

    math-verify reads a bare word as a product of symbols in which lower-case ``e`` is Euler's
    number, so ``YES`` != ``Yes`` and ``sey`` == ``yes``. Two-letter words other than "no" are
    left to math-verify because golds like ``xy`` or ``ab`` are products of variables.
    """
    s = _TEXT_MACRO.sub(r"\1", answer).replace("$", "").strip().rstrip(".!").strip()
    if re.fullmatch(r"[A-Za-z]+", s) and (len(s) >= 3 or s.lower() == "no"):
        return s.lower()
    return None


@functools.lru_cache(maxsize=4096)
def parse_gold(gold: str) -> list:
    # Cached: a batch holds K responses per problem, and re-parsing its gold was a third of a judgement.
    from math_verify import (  # sympy: slow to import
        ExprExtractionConfig,
        LatexExtractionConfig,
        parse,
    )

    # Expr config as well, so plain golds like "1/2" or "x^2+1" parse even outside LaTeX.
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    return parse(f"\\boxed{{{gold}}}", config, parsing_timeout=None) or parse(
        f"${gold}$", config, parsing_timeout=None
    )


def answers_match(pred: str, gold: str) -> bool:
    """Whether a boxed answer matches the gold. Unbounded time: run it under a timeout."""
    return _match(normalize_numbers(pred).strip(), normalize_numbers(tidy_gold(gold)))


@functools.lru_cache(maxsize=_MATCH_CACHE)
def _match(pred: str, gold: str) -> bool:
    """``answers_match`` on normalised strings, sympy only when no exact shortcut decides.

    Cached: a worker judges the same (prediction, gold) again whenever K responses agree, and a
    prediction identical to the gold is judged once per gold. The shortcuts give math-verify's
    verdict without sympy (tests/test_reward_fastpath.py checks them against ``slow_match``).
    """
    word = _as_word(gold)
    if word is not None:
        return _as_word(pred) == word
    if _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(pred):
        return int(gold) == int(pred)  # what math-verify decides for two integers, without sympy
    exact = _plain_decimals_equal(pred, gold)
    if exact is not None:
        return exact
    return slow_match(pred, gold)


def _plain_decimals_equal(pred: str, gold: str) -> bool | None:
    """Exact equality of two plain decimals, or None when either is anything else.

    math-verify rounds numbers to 6 decimals before comparing, and a decimal with at most 6
    of them and at most 15 digits (exact in a float) is its own rounding: equal iff equal.
    """
    if not (_DECIMAL.fullmatch(pred) and _DECIMAL.fullmatch(gold)):
        return None
    if max(sum(c.isdigit() for c in pred), sum(c.isdigit() for c in gold)) > 15:
        return None
    return Decimal(pred) == Decimal(gold)


def slow_match(pred: str, gold: str) -> bool:
    """math-verify's verdict on normalised strings (no shortcut, no cache)."""
    word = _as_word(gold)
    if word is not None:
        return _as_word(pred) == word
    if _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(pred.strip()):
        return int(gold) == int(pred.strip())
    from math_verify import LatexExtractionConfig, parse, verify

    gold_parsed = parse_gold(gold)
    # math-verify's own timeouts use signal.alarm, which only works on the main thread.
    pred_parsed = parse(f"\\boxed{{{pred}}}", [LatexExtractionConfig()], parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    if not verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return False
    return not small_numbers_differ(gold_parsed[0], pred_parsed[0])


def check_grader(grader: str) -> str:
    if grader not in GRADERS:
        raise P2OError(f"unknown grader {grader!r}; choose one of: {', '.join(GRADERS)}")
    return grader


def _judge(pred: str, gold: str, grader: str, bench: str | None = None) -> bool:
    """Equality of an extracted answer and a raw gold under a grader.

    qwen: the suite's normalised strings are equal (its own first test), or math-verify accepts
    the normalised pair, or the pair as written: ``strip_string`` mangles some answers (it
    deletes the "pm" of ``\\pm`` as a unit word), and math-verify needs no help with the rest.
    """
    if grader != "qwen":
        return answers_match(pred, gold)
    from .qwen import KEEP_UNITS, qwen_gold, qwen_strip  # compiled patterns: loaded when first graded

    keep = bench in KEEP_UNITS
    pred_suite, gold_suite = qwen_strip(qwen_strip(pred, keep), keep), qwen_gold(gold, bench)
    if pred_suite and pred_suite.lower() == gold_suite.lower():
        return True
    return (bool(pred_suite) and answers_match(pred_suite, gold_suite)) or answers_match(pred, gold)


def _final_answer(
    response: str, strict_format: bool, grader: str = "strict", bench: str | None = None
) -> tuple[str | None, str | None, bool]:
    """(the answer as shown, the answer as judged, whether it is worth judging at all).

    strict: the last box, twice. qwen: the suite's normalised prediction, then its raw extraction.
    """
    if grader == "qwen":
        from .qwen import KEEP_UNITS, qwen_extract_raw, qwen_strip

        raw = qwen_extract_raw(response)
        keep = bench in KEEP_UNITS
        return qwen_strip(qwen_strip(raw, keep), keep), raw, bool(raw.strip()) and len(raw) <= MAX_PRED_CHARS
    pred, judgeable = _last_box(response, strict_format)
    return pred, pred, judgeable


def _last_box(response: str, strict_format: bool) -> tuple[str | None, bool]:
    boxes = extract_boxed(response)
    if not boxes:
        return None, False
    pred = boxes[-1]
    fair = not strict_format or len(boxes) == 1
    return pred, fair and bool(pred.strip()) and len(pred) <= MAX_PRED_CHARS


def score_response(
    response: str, gold: str, *, strict_format: bool = False, grader: str = "strict", bench: str | None = None
) -> RewardResult:
    """Reward 1.0 iff the grader's answer matches the gold.

    ``strict``: the last box (with strict_format: the only box). ``qwen``: the Qwen suite's
    answer, with the gold parsed as the suite does for ``bench`` (minerva_math keeps units).
    Runs in this process without a time limit; use RewardScorer for untrusted generations.
    """
    shown, pred, judgeable = _final_answer(response, strict_format, check_grader(grader), bench)
    ok = judgeable and _judge(pred, gold, grader, bench)
    return RewardResult(1.0 if ok else 0.0, shown)
