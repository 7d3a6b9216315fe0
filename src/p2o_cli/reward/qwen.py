"""The ``qwen`` grader: answer extraction and normalisation as the Qwen2.5-Math evaluation suite does it.

Re-implemented from a reading of QwenLM/Qwen2.5-Math ``evaluation/parser.py`` (``extract_answer``,
``strip_string``, ``parse_ground_truth``), so that p2o's benchmark numbers can sit beside papers
that used that suite. Only the suite's *extraction* is reproduced here; equality stays with
math-verify (see reward.py), because the suite's own ``math_equal`` has known false positives
and negatives (docs/evaluation.md).

Differences from the suite, on purpose:
- Number words: the suite converts any text holding number words with the word2number package
  ("five apples" -> 5); here only answers made entirely of number words are converted.
- The suite's "strip brackets around an alphanumeric" step can never fire (it tests
  ``isalnum`` on the string *with* its brackets); it is left out.
"""

from __future__ import annotations

import re
from typing import Any

# Benchmarks whose golds and predictions keep their unit words (the suite's STRIP_EXCEPTIONS).
KEEP_UNITS = frozenset({"minerva_math"})

# Unit words the suite deletes when they stand alone (from MathQA), in the suite's order; each
# is also removed in its plural "-s" form. They are regex fragments: "q ." matches "q x" too.
_UNIT_WORDS = (  # noqa: SIM905 - one string reads better than 130 quoted words
    "east|degree|mph|kmph|ft|m sqaure| m east|sq m|deg|mile|q .|monkey|prime|ratio|profit of rs|rd|o|"
    "gm|p . m|lb|tile|per|dm|lt|gain|ab|way|west|a .|b .|c .|d .|e .|f .|g .|h .|t|a|h|no change|men|"
    "soldier|pie|bc|excess|st|inches|noon|percent|by|gal|kmh|c|acre|rise|a . m|th|π r 2|sq|mark|l|toy|"
    "coin|sq . m|gallon|° f|profit|minw|yr|women|feet|am|pm|hr|cu cm|square|v â € ™|are|rupee|rounds|"
    "cubic|cc|mtr|s|ohm|number|kmph|day|hour|minute|min|second|man|woman|sec|cube|mt|sq inch|mp|"
    "∏ cm ³|hectare|more|sec|unit|cu . m|cm 2|rs .|rs|kg|g|month|km|m|cm|mm|apple|liter|loss|yard|"
    "pure|year|increase|decrease|d|less|Surface|litre|pi sq m|s .|metre|meter|inch"
).split("|")
_UNIT_PATTERNS = [re.compile(r"(^|\W)" + word + r"($|\W)") for word in _UNIT_WORDS + [w + "s" for w in _UNIT_WORDS]]
_VARIABLE_PREFIXES = ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to")
_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")

_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "  # noqa: SIM905
          "fifteen sixteen seventeen eighteen nineteen").split()
_NUMBER_WORDS = {word: value for value, word in enumerate(_SMALL)} | {
    word: 10 * (i + 2) for i, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())  # noqa: SIM905
}
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}


def _number_words(text: str) -> str:
    """``text`` as digits when it is a whole number written in digits or in English words."""
    words = text.lower().replace("-", " ")
    if words.isdigit():  # word2number turns "025" into 25 this way, so the suite does too
        try:
            return str(int(words))
        except ValueError:  # superscripts are digits to isdigit() but not to int()
            return text
    total = current = 0
    seen = False
    for word in words.split():
        if word in _NUMBER_WORDS:
            current += _NUMBER_WORDS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _SCALES:
            total += max(current, 1) * _SCALES[word]
            current = 0
        elif word != "and":
            return text
        seen = True
    return str(total + current) if seen else text


def _fix_fracs(text: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{72}`` -> ``\frac{1}{72}``; unchanged if a frac has < 2 chars."""
    head, *parts = text.split("\\frac")
    out = [head]
    for part in parts:
        if part.startswith("{"):
            out.append(part)
        elif len(part) < 2:
            return text
        elif part[1] == "{":
            out.append("{" + part[0] + "}" + part[1:])
        else:
            out.append("{" + part[0] + "}{" + part[1] + "}" + part[2:])
    return "\\frac".join(out)


def _fix_slash(text: str) -> str:
    r"""``3/4`` -> ``\frac{3}{4}`` when both sides are plain integers (or hold a sqrt)."""
    sides = text.split("/")
    if len(sides) != 2:
        return text
    try:
        a, b = (side if "sqrt" in side else str(int(side)) for side in sides)
    except ValueError:
        return text
    return f"\\frac{{{a}}}{{{b}}}" if f"{a}/{b}" == text else text


def qwen_strip(text: str, keep_units: bool = False) -> str:
    """The suite's ``strip_string``: one canonical spelling for an answer (prediction or gold)."""
    s = str(text).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    unitless = re.sub(r"\\text{.*?}$", "", s).strip()  # a trailing \text{...} is taken as a unit
    if unitless:
        s = unitless
    if not keep_units:
        for _ in range(2):
            for pattern in _UNIT_PATTERNS:
                s = pattern.sub(r"\1\2", s) or s
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _number_words(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in _VARIABLE_PREFIXES:
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:  # engineers' imaginary unit
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 5" -> "5"
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _fix_slash(_fix_fracs(s))


def _after_last_box(text: str) -> str:
    """What follows the last "boxed": its brace-balanced group, else the text up to the next ``$``."""
    rest = text.split("boxed")[-1]
    if not rest.startswith("{"):
        return rest.split("$")[0].strip()
    depth = 0
    for i, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:i]
    return rest[1:]  # never closed: everything after the brace


def _tidy(answer: str) -> str:
    """The suite's clean-up of an extracted answer: join lines, drop one leading ':' and trailing './'."""
    answer = re.sub(r"\n\s*", "", answer)
    answer = answer.removeprefix(":").removesuffix(".")
    return answer.removesuffix("/")


def qwen_extract_raw(response: str) -> str:
    """The answer the suite reads in a completion, before ``strip_string`` ("" if none).

    Priority: Minerva's few-shot "final answer is $X$. I hope"; else the last "boxed"; else
    after the last "he answer is", else "final answer is"; else the last number.
    """
    text = response.replace("\u043a\u0438", "")  # a stray token the suite removes first
    if "final answer is $" in text and "$. I hope" in text:
        answer = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        answer = _after_last_box(text)
    elif "he answer is" in text:
        answer = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        answer = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        answer = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = _LAST_NUMBER.findall(text.replace(",", ""))
        answer = numbers[-1] if numbers else ""
    return _tidy(answer)


def qwen_extract(response: str, bench: str | None = None) -> str:
    """The suite's prediction for ``response``: extracted, then ``strip_string`` twice as the suite
    does (once in ``extract_answer``, once in ``run_execute``); Minerva keeps its units."""
    keep = bench in KEEP_UNITS
    return qwen_strip(qwen_strip(qwen_extract_raw(response), keep), keep)


def qwen_gold(answer: str, bench: str | None = None) -> str:
    """The suite's gold from p2o's raw gold (``Problem.answer``, as data.py loads it).

    Minerva's gold is the content of the solution's last box; the suite runs it through its own
    extractor (so ``strip_string`` without unit removal). Every other gold gets ``strip_string``.
    """
    if bench in KEEP_UNITS:
        return qwen_strip(_tidy(answer), keep_units=True)
    return qwen_strip(answer)


def suite_gold(bench: str, row: dict[str, Any]) -> str:
    """The suite's ``parse_ground_truth`` on a row of its own files (bench/*.jsonl), for cross-checks."""
    if bench in KEEP_UNITS:  # extracted like a prediction, but stripped only once
        return qwen_strip(qwen_extract_raw(row["solution"]), keep_units=True)
    if bench == "olympiadbench":
        return qwen_strip(row["final_answer"][0].strip("$"))
    return qwen_strip(row["answer"])
