"""The qwen grader: the Qwen2.5-Math suite's answer extraction and gold parsing, judged by math-verify.

Every expected value below was worked out by hand from the suite's rules (extract_answer, then
strip_string twice for predictions; parse_ground_truth for golds) before the code ran.
"""

from __future__ import annotations

import json
import logging
from itertools import groupby
from pathlib import Path

import pytest

from p2o_cli.data.problems import load_problems
from p2o_cli.reward.pool import RewardScorer
from p2o_cli.reward.qwen import qwen_extract, qwen_gold, suite_gold
from p2o_cli.reward.verify import check_grader, score_response

logging.getLogger("math_verify").setLevel(logging.ERROR)

# (response, benchmark, the suite's prediction)
EXTRACT: list[tuple[str, str | None, str]] = [
    (r"so the answer is \boxed{25}.", None, "25"),
    (r"first \boxed{3}, then \boxed{4}", None, "4"),
    ("The answer is 42.", None, "42"),
    ("The final answer is $7$. I hope it is correct.", None, "7"),
    ("so the final answer is 12", None, "12"),
    ("I computed 3, then 5, then 1,000 apples", None, "1000"),
    ("no digits here", None, ""),
    ("x = -3.5 is the value", None, "-3.5"),
    (r"$\boxed 5$ and more", None, "5"),
    (r"\boxed{\frac{1}{2}}", None, r"\frac{1}{2}"),
    (r"\boxed{\dfrac12}", None, r"\frac{1}{2}"),
    (r"\boxed{3/4}", None, r"\frac{3}{4}"),
    (r"\boxed{10\%}", None, "10"),
    (r"\boxed{5\text{ cm}}", None, "5"),
    (r"\boxed{5 cm}", None, "5"),
    (r"\boxed{5 cm}", "minerva_math", "5cm"),
    (r"\boxed{x = 3}", None, "3"),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", None, r"(3,\frac{\pi}{2})"),
    (r"\boxed{025}", None, "25"),
    (r"\boxed{five}", None, "5"),
    (r"\boxed{30^\circ}", None, "30"),
    (r"\boxed{\$18.90}", None, "18.90"),
    (r"\boxed{12.000}", None, "12"),
    (r"\boxed{.5}", None, "0.5"),
    (r"\boxed{\text{(C)}}", None, "(C)"),
    (r"\boxed{2 \pm \sqrt{3}}", None, "2\\\\sqrt{3}"),
    (r"\boxed{3+2j}", None, "3+2i"),
    (r"\boxed{\{1,2\}}", None, "{1,2}"),
    (r"\boxed{\emptyset}", None, "{}"),
    ("The answer is: 7.", None, "7"),
    ("\\boxed{1\n  + 2}", None, "1+2"),
    (r"\boxed{x \in [1,2]}", None, "[1,2]"),  # the 2nd strip_string drops "x\in"
    (r"\boxed{\text{Evelyn}}", None, "Evelyn"),
    (r"\boxed{7", None, "7"),
    (r"\fbox{7} is it, not 8", None, "8"),
    ("The answer is 4\u043a\u0438", None, "4"),
    ("答案是 9\n\n其他 10", None, "9"),
    (r"\boxed{\begin{array}{cc} 1 & 2 \end{array}}", None, r"\begin{pmatrix}1&2\end{pmatrix}"),
    (r"\boxed{1,000}", None, "1,000"),
    (r"\boxed{a}", None, "a"),
    (r"\boxed{(a,b)}", None, "(,b)"),
    (r"\boxed{(-\infty,\infty)}", None, r"\mathbb{R}"),
    (r"\boxed{x^2+3x}", None, "x^2+3x"),
    (r"\boxed{\sqrt2}", None, r"\sqrt{2}"),
    (r"\boxed{2.5\text{ hours}}", "minerva_math", "2.5"),
    (r"\boxed{20 \mbox{ inches}^2}", None, "20^2"),
]

# (response, raw gold, benchmark, qwen reward, strict reward)
JUDGE: list[tuple[str, str, str | None, float, float]] = [
    ("The answer is 42.", "42", None, 1.0, 0.0),
    ("we get 5 apples, so 17", "17", None, 1.0, 0.0),
    ("17 apples and 3 left", "17", None, 0.0, 0.0),
    ("The final answer is $4.5 \\times 10^{33}$. I hope it is correct.", "4.5e33", "minerva_math", 1.0, 0.0),
    (r"\boxed{4.5 \times 10^{33}}", "4.5e33", "minerva_math", 1.0, 1.0),
    (r"\boxed{5 cm}", "5 cm", "minerva_math", 1.0, 1.0),
    (r"\boxed{25}", "025", "aime24", 1.0, 1.0),
    (r"\boxed{27.0}", "27", "amc23", 1.0, 1.0),
    (r"\boxed{k+4}", "n=k+4", "olympiadbench", 1.0, 1.0),  # math-verify drops a lone-letter lhs too
    (r"\boxed{1 \pm \sqrt{19}}", r"1 \pm \sqrt{19}", "math500", 1.0, 1.0),
    (r"\boxed{1-\sqrt{19}}", r"1 \pm \sqrt{19}", "math500", 0.0, 0.0),
    (r"\boxed{\text{west}}", r"\text{east}", "math500", 0.0, 0.0),
    (r"\boxed{\text{east}}", r"\text{east}", "math500", 1.0, 1.0),
    (r"\boxed{}", r"\text{east}", "math500", 0.0, 0.0),
    ("The answer is 50%.", "50", None, 1.0, 0.0),
    (r"\boxed{\frac{1}{2}}", "0.5", None, 1.0, 1.0),
    (r"\boxed{(1,2)}", "(2,1)", None, 0.0, 0.0),
    (r"\boxed{x=3}", "3", None, 1.0, 1.0),
    ("I think it is 4, final check 5", "4", None, 0.0, 0.0),
    ("I don't know", "3", None, 0.0, 0.0),
    (r"\boxed{-1/3}", "-1./3", "minerva_math", 1.0, 1.0),
    (r"\boxed{0.001}", "1e-3", "minerva_math", 1.0, 1.0),
    (r"\boxed{(0,1]}", "[0,1]", None, 0.0, 0.0),
    (r"\boxed{\{2,1\}}", r"\{1,2\}", None, 1.0, 1.0),
    (r"\boxed{10001}", "10000", None, 0.0, 0.0),
    (r"\boxed{５}", "5", None, 1.0, 1.0),
    (r"\boxed{2.50}", r"\frac{5}{2}", None, 1.0, 1.0),
    (r"\boxed{x \in [1,2]}", "[1,2]", None, 1.0, 1.0),
    (r"\boxed{\dfrac{3}{4}}", "3/4", None, 1.0, 1.0),
    (r"\boxed{3} and later I say the answer is 4", "3", None, 1.0, 1.0),
]

# (raw gold as data.py loads it, benchmark, the suite's gold)
GOLDS: list[tuple[str, str, str]] = [
    ("025", "aime24", "25"),  # word2number turns an all-digit string into an int
    ("27", "amc23", "27"),
    (r"\left( 3, \frac{\pi}{2} \right)", "math500", r"(3,\frac{\pi}{2})"),
    (r"\text{even}", "math500", "even"),
    ("2.5 hours", "math500", "2.5"),
    ("2.5 hours", "minerva_math", "2.5hours"),  # Minerva keeps unit words...
    (r"5 \text{ cm}", "minerva_math", "5"),  # ...but not a trailing \text{} unit
    ("x / 2-1 / 4+c e^{-2 x}", "minerva_math", "x/2-1/4+ce^{-2x}"),
    (r"1 \leq x", "minerva_math", r"1\lex"),
    ("n=k+4", "olympiadbench", "k+4"),
    (r"\frac{n(n+1)(2 n+1)}{6}", "olympiadbench", r"\frac{n(n+1)(2n+1)}{6}"),
    ("4.5e33", "minerva_math", "4.5e33"),  # the suite keeps it; normalize_numbers reads it later
]

SUITE_ROWS: list[tuple[str, dict, str]] = [
    ("olympiadbench", {"final_answer": ["$\\frac{1}{2}$"]}, r"\frac{1}{2}"),
    ("minerva_math", {"solution": "Thus $\\boxed{7.25e-11}$ m."}, "7.25e-11"),
    ("minerva_math", {"solution": "so \\boxed{3} and later \\boxed{5 \\text{ s}}."}, "5"),
    ("aime24", {"answer": "025"}, "25"),
    ("amc23", {"answer": 27.0}, "27"),
    ("aime25", {"answer": 70}, "70"),
    ("math500", {"answer": "\\dfrac{1}{2}"}, r"\frac{1}{2}"),
]
BENCHES = ("aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench")


def test_tables_are_big_enough() -> None:
    assert len(EXTRACT) + len(JUDGE) + len(GOLDS) + len(SUITE_ROWS) >= 40 and len(EXTRACT) >= 40


@pytest.mark.parametrize(("response", "bench", "expected"), EXTRACT)
def test_extraction(response: str, bench: str | None, expected: str) -> None:
    assert qwen_extract(response, bench) == expected


@pytest.mark.parametrize(("response", "gold", "bench", "qwen", "strict"), JUDGE)
def test_both_graders(response: str, gold: str, bench: str | None, qwen: float, strict: float) -> None:
    assert score_response(response, gold, grader="qwen", bench=bench).reward == qwen
    assert score_response(response, gold, grader="strict", bench=bench).reward == strict


@pytest.mark.parametrize(("answer", "bench", "expected"), GOLDS)
def test_gold_from_loaded_answer(answer: str, bench: str, expected: str) -> None:
    assert qwen_gold(answer, bench) == expected


@pytest.mark.parametrize(("bench", "row", "expected"), SUITE_ROWS)
def test_suite_gold_from_its_own_rows(bench: str, row: dict, expected: str) -> None:
    assert suite_gold(bench, row) == expected


@pytest.mark.parametrize("bench", BENCHES)
def test_loaded_golds_match_the_suite_on_the_verbatim_files(shared_data: Path, bench: str) -> None:
    """data.py's gold + qwen_gold == the suite's parse_ground_truth, row by row, on the suite's files."""
    path = shared_data / "bench" / f"{bench}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    problems = load_problems(str(path))
    assert len(rows) == len(problems) > 0
    assert [qwen_gold(p.answer, bench) for p in problems] == [suite_gold(bench, row) for row in rows]


@pytest.mark.timeout(120)
def test_scorer_agrees_with_score_response() -> None:
    by_bench = sorted(JUDGE, key=lambda case: case[2] or "")
    with RewardScorer(timeout_s=10.0, workers=2, grader="qwen") as scorer:
        for bench, group in groupby(by_bench, key=lambda case: case[2]):
            cases = list(group)
            results = scorer.score([c[0] for c in cases], [c[1] for c in cases], bench=bench)
            assert [r.reward for r in results] == [c[3] for c in cases]
            assert [r.pred for r in results] == [qwen_extract(c[0], bench) for c in cases]
        # The same answer under the other grader is another cache entry, not a stale hit.
        assert scorer.score(["The answer is 42."], ["42"], grader="strict")[0].reward == 0.0
        assert scorer.score(["The answer is 42."], ["42"])[0].reward == 1.0


def test_unknown_grader_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown grader 'loose'"):
        check_grader("loose")
    with pytest.raises(ValueError, match="unknown grader"):
        RewardScorer(grader="loose")
