"""The paper's published figures and the comparison beside a user's numbers."""

from __future__ import annotations

import pytest

from p2o_cli.evaluation.paper import BENCHES, PAPER_ROWS, check_compare, comparison_rows, paper_markdown


def test_figures_are_the_papers() -> None:
    assert len(PAPER_ROWS) == 12 and all(len(r.scores) == len(BENCHES) for r in PAPER_ROWS)
    teacher = next(r for r in PAPER_ROWS if r.model == "P²O Teacher-Ref" and r.train_set == "DeepScaler-5K")
    assert teacher.scores == (59.8, 49.4, 92.2, 91.4, 36.4, 62.2) and teacher.average == 65.2
    # The printed AVG is the mean of the six, to rounding, except two rows where the paper's
    # own column disagrees with its numbers (kept as published).
    off = {r.model for r in PAPER_ROWS if abs(sum(r.scores) / 6 - r.average) > 0.051}
    assert off == {"Qwen3-0.6B", "Qwen3-4B-Base"}


def test_delta_is_over_the_benchmarks_the_run_has() -> None:
    header, rows = comparison_rows({"mine": {"aime24": 30.0, "math500": 85.0}})
    assert header[-1] == "Δ mine" and rows[0][:8] == ["mine", "30.0", "–", "–", "85.0", "–", "–", "57.5"]
    base = next(r for r in rows if r[0].startswith("Qwen3-4B [T1]"))
    # (30 + 85) / 2 - (23.8 + 82.8) / 2 = 57.5 - 53.3 = +4.2
    assert base[-1] == "+4.2"
    assert "arXiv 2603.21877" in paper_markdown({"mine": {"aime24": 30.0}})


def test_compare_choices() -> None:
    assert check_compare(None) is None and check_compare("paper") == "paper"
    with pytest.raises(ValueError, match="--compare must be one of: paper"):
        check_compare("papers")
