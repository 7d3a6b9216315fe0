"""The built-in rewards besides ``code``: ``math`` (today's training reward), ``exact``, ``choice``
and ``regex``. Each is an ordinary reward function (see :mod:`.registry`) with ``extract`` and
``leaks`` hooks; the scorer runs ``math`` on its own fast path (cache, gold parsed once per worker)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import P2OError
from .registry import register_reward
from .verify import last_boxed, score_response

Problems = Sequence[Mapping[str, Any]]


# ---------------------------------------------------------------- math


@register_reward("math")
def math_reward(responses: Sequence[str], problems: Problems) -> list[float]:
    """1 when the last ``\\boxed{}`` is the gold under math-verify, else 0."""
    return [score_response(r, str(p["answer"])).reward for r, p in zip(responses, problems)]


math_reward.extract = lambda response, problem: last_boxed(response)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- exact

_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Unicode NFKC, ``\\text{}`` unwrapped, ``$`` dropped, spaces collapsed, case folded, a final
    period dropped: "  The  Eiffel Tower. " and "the eiffel tower" are the same answer."""
    text = unicodedata.normalize("NFKC", text)
    text = _TEXT_MACRO.sub(r"\1", text).replace("$", "")
    return _SPACES.sub(" ", text).strip().rstrip(".").strip().casefold()


def final_text(response: str) -> str:
    """The last ``\\boxed{}`` of a response, or the whole response if it has none."""
    boxed = last_boxed(response)
    return response if boxed is None else boxed


@register_reward("exact")
def exact_reward(responses: Sequence[str], problems: Problems) -> list[float]:
    """1 when the final answer (last ``\\boxed{}``, else the whole response) equals the gold after
    :func:`normalize_text`, else 0."""
    return [float(normalize_text(final_text(r)) == normalize_text(str(p["answer"])))
            for r, p in zip(responses, problems)]


exact_reward.extract = lambda response, problem: final_text(response).strip()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- choice

_SAID = re.compile(r"(?i:answer)\s*(?:is|:|=)?\s*:?\s*\(?\s*([A-Z])\s*\)?(?![A-Za-z0-9])")
_LETTER = re.compile(r"\(?\s*([A-Z])\s*\)?\.?")


def _letter(text: str) -> str | None:
    """``B``, ``(B)``, ``\\text{B}``, ``B.`` -> ``B``; anything else -> None."""
    m = _LETTER.fullmatch(_TEXT_MACRO.sub(r"\1", text).replace("$", "").strip())
    return m.group(1) if m else None


def _options(problem: Mapping[str, Any]) -> dict[str, str]:
    """The problem's options by letter, from an ``options`` (or ``choices``) list or object."""
    given = problem.get("options", problem.get("choices"))
    if isinstance(given, Mapping):
        return {str(k).strip().upper(): str(v) for k, v in given.items()}
    if isinstance(given, (list, tuple)):
        return {chr(ord("A") + i): str(v) for i, v in enumerate(given[:26])}
    return {}


def chosen_letter(response: str, problem: Mapping[str, Any] | None = None) -> str | None:
    """The letter of the last "answer is (X)" or ``\\boxed{X}`` in a response (None if neither,
    or if the problem lists options and X is not one of them)."""
    said = list(_SAID.finditer(response))
    candidates = [(m.start(), m.group(1)) for m in said[-1:]]
    box_at = max(response.rfind("\\boxed"), response.rfind("\\fbox"))
    boxed = last_boxed(response)
    if boxed is not None and _letter(boxed):
        candidates.append((box_at, _letter(boxed)))
    if not candidates:
        return None
    letter = max(candidates)[1]
    valid = _options(problem or {})
    return letter if not valid or letter in valid else None


def gold_letter(problem: Mapping[str, Any]) -> str | None:
    """The gold as a letter: ``B`` / ``(B)``, or the text of one of the problem's options."""
    answer = str(problem["answer"])
    letter = _letter(answer)
    if letter:
        return letter
    by_text = {normalize_text(v): k for k, v in _options(problem).items()}
    return by_text.get(normalize_text(answer))


@register_reward("choice")
def choice_reward(responses: Sequence[str], problems: Problems) -> list[float | None]:
    """1 when the chosen letter is the gold's, else 0; None when the gold names no option."""
    out: list[float | None] = []
    for response, problem in zip(responses, problems):
        gold = gold_letter(problem)
        out.append(None if gold is None else float(chosen_letter(response, problem) == gold))
    return out


def _choice_leaks(problem: Mapping[str, Any]) -> list[str]:
    # A bare letter is no leak ("A good plan is…"); the answer stated as an answer is.
    letter = gold_letter(problem)
    if letter is None:
        return [str(problem["answer"])]
    leaks = [f"({letter})", f"answer is {letter}", f"\\boxed{{{letter}}}"]
    text = _options(problem).get(letter)
    return [*leaks, text] if text else leaks


choice_reward.extract = chosen_letter  # type: ignore[attr-defined]
choice_reward.leaks = _choice_leaks  # type: ignore[attr-defined]


# ---------------------------------------------------------------- regex


@functools.lru_cache(maxsize=32)
def compile_answer_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled; P2OError unless it is valid and has a group named ``answer``."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise P2OError(f"--reward regex:{pattern}: not a valid regular expression ({err})") from None
    if "answer" not in compiled.groupindex:
        raise P2OError(f"--reward regex:{pattern}: the pattern needs a group named answer: (?P<answer>...)")
    return compiled


def regex_answer(response: str, problem: Mapping[str, Any] | None = None, *, pattern: str) -> str | None:
    """The ``answer`` group of the pattern's last match in the response."""
    last = None
    for last in compile_answer_pattern(pattern).finditer(response):  # noqa: B007 - the last match is wanted
        pass
    return None if last is None or last.group("answer") is None else last.group("answer")


@register_reward("regex")
def regex_reward(responses: Sequence[str], problems: Problems, *, pattern: str) -> list[float]:
    """1 when the ``answer`` group of the pattern's last match equals the gold (as ``exact`` compares)."""
    out = []
    for response, problem in zip(responses, problems):
        found = regex_answer(response, pattern=pattern)
        out.append(float(found is not None and normalize_text(found) == normalize_text(str(problem["answer"]))))
    return out


regex_reward.extract = regex_answer  # type: ignore[attr-defined]
