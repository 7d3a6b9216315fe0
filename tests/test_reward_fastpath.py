"""The reward's exact shortcuts (plain integers and decimals, the per-worker cache, stripped
predictions) give math-verify's own verdict: checked pair by pair against ``slow_match`` on
realistic (prediction, gold) pairs built from the six benchmarks' golds."""

from __future__ import annotations

import json
import random
from pathlib import Path

from p2o_cli.reward import verify as reward
from p2o_cli.reward.normalize import normalize_numbers, tidy_gold
from p2o_cli.reward.verify import answers_match, slow_match

BENCHES = ("aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench")


def _golds(shared_data: Path) -> list[str]:
    golds = []
    for name in BENCHES:
        path = shared_data / "bench" / "normalized" / f"{name}.jsonl"
        golds += [str(json.loads(line)["answer"]) for line in path.read_text().splitlines() if line.strip()]
    return golds


def _variants(gold: str, other: str, rng: random.Random) -> list[str]:
    """Predictions an RL batch holds for this gold: right, padded, wrong, nearly right."""
    out = [gold, f" {gold} ", other]
    g = gold.strip()
    if g.lstrip("-").isdigit():
        n = int(g)
        out += [str(n + rng.choice([-1, 1, 10])), f"{n}.0", f"{n}.000001", f"{n}.5", f"{n}/1", f"-{n}"]
    else:
        try:
            x = float(g)
        except ValueError:
            pass
        else:
            out += [f"{x:.6f}", f"{x + 1e-6:.6f}", f"{x:.2f}", f"{x * 10:g}"]
    return out


def _pairs(shared_data: Path) -> list[tuple[str, str]]:
    golds = _golds(shared_data)
    rng = random.Random(0)
    decimals = [g for g in golds if g.replace(".", "", 1).lstrip("-").isdigit() and "." in g]
    # Every decimal gold, and an even sample of the rest (integers, fractions, LaTeX, words, sets).
    chosen = decimals + rng.sample([g for g in golds if g not in decimals], 45)
    pairs = []
    for gold in chosen:
        pairs += [(pred, gold) for pred in _variants(gold, rng.choice(golds), rng)]
    pairs += [("0.000500", "0.0005"), ("0.0005", "0.0004999"), ("0.1234565", "0.123457"), ("-0", "0"),
              ("1.5", "\\frac{3}{2}"), ("0.333333", "\\frac13"), ("12345678901234.5", "12345678901234.4")]
    return pairs


def test_shortcuts_agree_with_math_verify_pair_by_pair(shared_data: Path) -> None:
    pairs = _pairs(shared_data)
    reward._match.cache_clear()
    shortcut = 0
    for pred, gold in pairs:
        p, g = normalize_numbers(pred), normalize_numbers(tidy_gold(gold))
        if reward._plain_decimals_equal(p.strip(), g) is not None or p != p.strip():
            shortcut += 1
        assert answers_match(pred, gold) == slow_match(p, g), (pred, gold)
    assert len(pairs) >= 250
    # Not vacuous: the decimal shortcut or stripping decided a good share of these pairs.
    assert shortcut >= 60, shortcut


def test_plain_decimals_compare_exactly_only_where_math_verify_rounds_to_themselves() -> None:
    assert reward._plain_decimals_equal("0.50", "0.5") is True
    assert reward._plain_decimals_equal("-2.25", "-2.26") is False
    assert reward._plain_decimals_equal("3", "3.0") is True
    # 7 decimals (math-verify rounds to 6), 16 digits (beyond a float), fractions: not decided here.
    assert reward._plain_decimals_equal("0.1234567", "0.1234568") is None
    assert reward._plain_decimals_equal("1234567890123456", "1234567890123456.5") is None
    assert reward._plain_decimals_equal("1/2", "0.5") is None


def test_a_prediction_repeated_for_one_gold_is_judged_once() -> None:
    reward._match.cache_clear()
    for _ in range(3):
        assert answers_match("\\frac{2}{6}", "\\frac13")
        assert answers_match(" \\frac{2}{6} ", "\\frac13")
    assert reward._match.cache_info().misses == 1
