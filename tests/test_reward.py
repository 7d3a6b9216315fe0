"""The binary reward: box extraction, math-verify judgements, and the guarded process pool."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from p2o_cli.reward.pool import RewardScorer, score_many
from p2o_cli.reward.verify import MAX_PRED_CHARS, RewardResult, extract_boxed, score_response

# (response, gold, expected reward). Every row was reasoned out by hand first, then run.
CASES: list[tuple[str, str, float]] = [
    # integers
    (r"The answer is $\boxed{025}$.", "25", 1.0),  # AIME-style leading zero in the prediction
    (r"\boxed{25}", "025", 1.0),  # ... or in the gold
    (r"\boxed{025}", "205", 0.0),
    (r"\boxed{-7}", "-7", 1.0),
    (r"\boxed{7}", "-7", 0.0),
    (r"\boxed{-025}", "-25", 1.0),
    (r"\boxed{1{,}000}", "1000", 1.0),
    (r"\boxed{3}", "3,000", 0.0),  # the comma in the gold is a thousands separator
    (r"\boxed{204.0}", "204", 1.0),
    (r"\boxed{2^{10}}", "1024", 1.0),  # nested braces inside the box
    # fractions and decimals
    (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{\dfrac{1}{2}}", r"\frac12", 1.0),
    (r"\boxed{1/2}", r"\frac{1}{2}", 1.0),
    (r"\boxed{\frac{2}{4}}", "1/2", 1.0),
    (r"\boxed{\frac{-1}{2}}", r"-\frac12", 1.0),
    (r"\boxed{-\frac{1}{2}}", r"\frac{1}{2}", 0.0),
    (r"\boxed{4.67}", r"\frac{14}{3}", 0.0),  # rounded decimals are not accepted
    # radicals, pi
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt2}{2}", 1.0),
    (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{\sqrt{2}}{2}", 1.0),
    (r"\boxed{\frac{\sqrt{3}}{{2}}}", r"\frac{\sqrt3}{2}", 1.0),
    (r"\boxed{\sqrt{3}}", r"\sqrt{2}", 0.0),
    (r"\boxed{\frac{\pi}{2}}", r"\pi/2", 1.0),
    (r"\boxed{\pi \cdot 2}", r"2\pi", 1.0),
    (r"\boxed{3.14}", r"\pi", 0.0),
    # intervals
    (r"\boxed{(0,1]}", "[0,1]", 0.0),
    (r"\boxed{\left(0, 1\right]}", "(0,1]", 1.0),
    (r"\boxed{[0,1)}", "[0,1]", 0.0),
    (r"\boxed{(-\infty, 2)}", r"(-\infty,2)", 1.0),
    (r"\boxed{(-\infty,2]}", r"(-\infty,2)", 0.0),
    # sets, tuples, matrices
    (r"\boxed{\{3,1,2\}}", r"\{1,2,3\}", 1.0),
    (r"\boxed{3, 1, 2}", r"\{1,2,3\}", 1.0),  # a bare list of solutions is a set
    (r"\boxed{\{1,2\}}", r"\{1,2,3\}", 0.0),
    (r"\boxed{(1,2,3)}", "(1,2,3)", 1.0),
    (r"\boxed{(1,3,2)}", "(1,2,3)", 0.0),
    (r"\boxed{(3, \pi/2)}", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    (r"\boxed{(\frac{\pi}{2}, 3)}", r"\left( 3, \frac{\pi}{2} \right)", 0.0),
    (r"\boxed{\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 1.0),
    (r"\boxed{\begin{pmatrix} 1 & 2 \\ 4 & 3 \end{pmatrix}}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0.0),
    # algebra, equations
    (r"\boxed{(x+1)^2}", "x^2+2x+1", 1.0),
    (r"\boxed{x^2-1}", "x^2+1", 0.0),
    (r"\boxed{3-2i}", "3+2i", 0.0),
    # math-verify drops a lone-variable left side, so "x = 3" answers "3" (and "y=2x+1" answers
    # "2x+1"); we keep that: the value is right and the problem names the variable.
    (r"\boxed{x = 3}", "3", 1.0),
    (r"\boxed{y = 3}", "x=3", 0.0),
    # percentages, money, units, degrees
    (r"\boxed{50\%}", "50", 1.0),
    (r"\boxed{\$18.90}", "18.90", 1.0),
    (r"\boxed{5\text{ cm}}", "5", 1.0),
    (r"\boxed{5}", r"5\text{ cm}", 1.0),
    (r"\boxed{6\text{ cm}}", "5", 0.0),
    (r"\boxed{30^\circ}", "30", 1.0),
    # text answers
    (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", 1.0),
    (r"\boxed{Evelyn}", r"\text{Evelyn}", 1.0),
    (r"\boxed{\text{Navin}}", r"\text{Evelyn}", 0.0),
    (r"\boxed{\text{(C)}}", "C", 1.0),
    (r"\boxed{B}", r"\text{(C)}", 0.0),
    (r"\boxed{\text{Yes}}", "Yes", 1.0),
    (r"\boxed{YES}", "Yes", 1.0),  # math-verify alone: 0 (lower-case e is Euler's number)
    (r"\boxed{\textbf{No.}}", "No", 1.0),  # math-verify alone: 0 (trailing period)
    (r"\boxed{No}", "Yes", 0.0),
    (r"\boxed{sey}", "Yes", 0.0),  # math-verify alone: 1 (a product of symbols commutes)
    (r"\boxed{THH}", "HHT", 0.0),  # math-verify alone: 1, same reason
    (r"\boxed{yx}", "xy", 1.0),  # two-letter golds stay algebra: xy is a product
    # format: no box, several boxes, empty or broken boxes, other box macros
    ("The answer is 25.", "25", 0.0),
    ("$25$", "25", 0.0),
    (r"First \boxed{3}, but that is wrong; the answer is \boxed{4}.", "4", 1.0),
    (r"First \boxed{3}, but that is wrong; the answer is \boxed{4}.", "3", 0.0),
    (r"\boxed{}", "0", 0.0),
    (r"\boxed{7", "7", 0.0),  # truncated generation: the box never closes
    (r"$\boxed 7$", "7", 1.0),
    (r"\fbox{7}", "7", 1.0),
    (r"\boxed{\boxed{7}}", "7", 1.0),
]


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 45


@pytest.mark.parametrize(("response", "gold", "expected"), CASES)
def test_score_response(response: str, gold: str, expected: float) -> None:
    assert score_response(response, gold).reward == expected


@pytest.mark.timeout(60)
def test_scorer_agrees_with_score_response() -> None:
    responses, golds, expected = zip(*CASES)
    with RewardScorer(timeout_s=5.0, workers=2) as scorer:
        results = scorer.score(responses, golds)
    assert [r.reward for r in results] == list(expected)
    assert [r.pred for r in results] == [score_response(r, g).pred for r, g, _ in CASES]


def test_math_verify_quirks_pinned() -> None:
    """Judgements we accept as they are; pinned so an upgrade that changes them is noticed."""
    assert score_response(r"\boxed{12}", r"12\%").reward == 1.0  # % is accepted either way...
    assert score_response(r"\boxed{50\%}", "0.5").reward == 1.0  # ...and as a fraction
    assert score_response(r"\boxed{25\text{ m}}", r"25\text{ cm}").reward == 1.0  # units are dropped
    # math-verify alone reads 1e3 as 1·e·3 (Euler's number); normalize_numbers rewrites it first.
    assert score_response(r"\boxed{1e3}", "1000").reward == 1.0
    assert score_response(r"\boxed{[0,1]}", r"0 \le x \le 1").reward == 1.0
    assert score_response(r"\boxed{0 \le x \le 1}", "[0,1]").reward == 0.0  # not symmetric


def test_strict_format() -> None:
    two = r"First \boxed{3}, no: \boxed{4}."
    assert score_response(two, "4", strict_format=True) == RewardResult(0.0, "4")
    assert score_response(r"so \boxed{4}", "4", strict_format=True) == RewardResult(1.0, "4")
    with RewardScorer(workers=1, strict_format=True) as scorer:
        assert [r.reward for r in scorer.score([two, r"\boxed{4}"], ["4", "4"])] == [0.0, 1.0]


def test_extract_boxed() -> None:
    text = r"a \boxed{1} b \fbox{2} $\boxed 3$ \boxed{\{1,2\}} \boxed{\frac{1}{2}} \boxed{7"
    assert extract_boxed(text) == ["1", "2", "3", r"\{1,2\}", r"\frac{1}{2}"]
    assert extract_boxed(r"\boxed{a\}b}") == [r"a\}b"]  # escaped braces do not close the box
    assert extract_boxed(r"\boxed{\boxed{7}}") == [r"\boxed{7}"]
    assert extract_boxed("\\boxed 12. Done") == ["12"]
    assert extract_boxed(r"\boxedfoo{1} and \boxed5") == []  # not the \boxed macro / not LaTeX
    assert extract_boxed("no box here") == []


def test_pred_is_last_box_or_none() -> None:
    assert score_response(r"\boxed{3} then \boxed{x = 4}", "5") == RewardResult(0.0, "x = 4")
    assert score_response("no box", "5") == RewardResult(0.0, None)
    assert score_response(r"\boxed{}", "5") == RewardResult(0.0, "")
    assert score_response(r"\boxed{\frac{\pi}{2}}", r"\pi/2") == RewardResult(1.0, r"\frac{\pi}{2}")


# --- the guarded pool ------------------------------------------------------------------------

HANGS = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy tries to evaluate the tower
HOSTILE = [
    pytest.param(HANGS, id="power-tower"),
    pytest.param(r"\boxed{9^{9^{9}}}", id="small-tower"),
    pytest.param(r"\boxed{(10^{10})!}", id="huge-factorial"),
    pytest.param(r"\boxed{(10^{10})!^{(10^{10})!}}", id="factorial-power"),
    pytest.param(r"\boxed{" + r"\frac{1}{" * 150 + "2" + "}" * 150 + "}", id="nested-frac"),
    pytest.param(r"\boxed{" + "1+" * 100_000 + "1}", id="200kB-box"),
    pytest.param("x" * 200_000 + r" \boxed{" + "{" * 100_000, id="200kB-unclosed"),
]


@pytest.fixture(scope="module")
def fast_scorer():
    with RewardScorer(timeout_s=1.0, workers=2) as scorer:
        yield scorer


@pytest.mark.timeout(60)
@pytest.mark.parametrize("response", HOSTILE)
def test_hostile_input_scores_zero(fast_scorer: RewardScorer, response: str) -> None:
    [result] = fast_scorer.score([response], ["1"])
    assert result.reward == 0.0
    assert result.pred == (extract_boxed(response) or [None])[-1]


@pytest.mark.timeout(60)
def test_hostile_items_do_not_spoil_their_batch() -> None:
    # The pool is killed under the good items too; they must be re-run, not scored 0.
    responses = [r"\boxed{1}", HANGS, r"\boxed{2}", r"\boxed{(10^{10})!}", r"\boxed{3}", r"\boxed{4}"]
    golds = ["1", "1", "2", "1", "3", "5"]
    with RewardScorer(timeout_s=1.0, workers=2) as scorer:
        rewards = [r.reward for r in scorer.score(responses, golds)]
        assert rewards == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
        assert scorer.n_timeouts == 2
        # still healthy afterwards
        assert scorer.score([r"\boxed{\frac12}"], ["0.5"])[0].reward == 1.0


def test_long_prediction_is_not_judged() -> None:
    long_box = r"\boxed{" + "1" * (MAX_PRED_CHARS + 1) + "}"
    with RewardScorer(workers=1) as scorer:
        assert scorer.score([long_box], ["1"])[0].reward == 0.0
        assert scorer.n_jobs == 0


@pytest.mark.timeout(60)
def test_works_from_a_non_main_thread() -> None:
    out: list[list[RewardResult]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with RewardScorer(timeout_s=1.0, workers=2) as scorer:
                out.append(scorer.score([r"\boxed{\frac{1}{2}}", HANGS, "none"], ["0.5", "1", "1"]))
        except BaseException as e:  # noqa: BLE001 - surface it in the main thread
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert not errors
    assert [r.reward for r in out[0]] == [1.0, 0.0, 0.0]


def test_cache_skips_the_pool() -> None:
    responses = [r"\boxed{5}", r"\boxed{5}", r"\boxed{6}", "no box"]
    golds = ["5", "5", "5", "5"]
    with RewardScorer(workers=2) as scorer:
        first = scorer.score(responses, golds)
        assert scorer.n_jobs == 2  # duplicates in a batch and box-less responses cost nothing
        assert len(scorer.cache) == 2
        second = scorer.score(responses, golds)
        assert scorer.n_jobs == 2
        assert first == second
        assert [r.reward for r in first] == [1.0, 1.0, 0.0, 0.0]


def _worker_pids(scorer: RewardScorer) -> list[int]:
    pool = scorer._pool
    return list(pool._processes) if pool is not None and pool._processes else []


def _kill_workers_once_running(scorer: RewardScorer, jobs: int) -> None:
    """Wait until `jobs` jobs were sent, then SIGKILL the workers (as a segfault would end them)."""
    deadline = time.monotonic() + 30
    while scorer.n_jobs < jobs or not _worker_pids(scorer):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # let the job reach a worker
    for pid in _worker_pids(scorer):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_worker_crash_scores_zero_not_exception() -> None:
    with RewardScorer(timeout_s=30.0, workers=2) as scorer:
        out: list[list[RewardResult]] = []
        thread = threading.Thread(target=lambda: out.append(scorer.score([HANGS], ["1"])))
        thread.start()
        _kill_workers_once_running(scorer, jobs=1)  # first crash: the item is retried alone
        _kill_workers_once_running(scorer, jobs=2)  # second crash: it is the culprit
        thread.join()
        assert out == [[RewardResult(0.0, HANGS[len(r"\boxed{") : -1])]]
        assert scorer.n_timeouts == 0
        assert scorer.score([r"\boxed{2}"], ["2"])[0].reward == 1.0


@pytest.mark.timeout(60)
def test_dead_idle_workers_are_replaced() -> None:
    with RewardScorer(workers=2) as scorer:
        assert scorer.score([r"\boxed{1}"], ["1"])[0].reward == 1.0
        for pid in _worker_pids(scorer):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        rewards = [r.reward for r in scorer.score([r"\boxed{2}", r"\boxed{3}", r"\boxed{4}"], ["2", "3", "5"])]
        assert rewards == [1.0, 1.0, 0.0]


def test_score_many_and_length_check() -> None:
    results = score_many([r"\boxed{2}", "nothing"], ["2", "2"], workers=1)
    assert results == [RewardResult(1.0, "2"), RewardResult(0.0, None)]
    with pytest.raises(ValueError):
        score_many(["a"], [], workers=1)


@pytest.mark.timeout(60)
def test_batched_jobs_time_each_item_and_keep_finished_results() -> None:
    # One worker, batches of up to 6: the hang sits inside a batch. It alone scores 0; the items
    # judged before it keep their results and only those after it in its batch run again.
    responses = [rf"\boxed{{{k}/2}}" for k in range(20)]
    responses[9] = HANGS
    golds = [f"{k / 2}" for k in range(20)]
    with RewardScorer(timeout_s=1.0, workers=1, batch_size=64) as scorer:
        rewards = [r.reward for r in scorer.score(responses, golds)]
        assert rewards == [0.0 if k == 9 else 1.0 for k in range(20)]
        assert scorer.n_timeouts == 1
        assert 20 <= scorer.n_jobs < 20 + 6


def test_gold_is_parsed_once_and_integers_skip_sympy() -> None:
    from p2o_cli.reward import verify as reward

    reward.parse_gold.cache_clear()
    for response in (r"\boxed{\frac{1}{3}}", r"\boxed{2/6}", r"\boxed{0.5}"):
        score_response(response, r"\frac13")
    assert reward.parse_gold.cache_info().misses == 1
    assert score_response(r"\boxed{-012}", "-12").reward == 1.0 and reward.parse_gold.cache_info().misses == 1
