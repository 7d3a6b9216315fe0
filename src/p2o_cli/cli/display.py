"""Rich tables for the terminal; the algorithm modules return plain data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table


def results_table(results: dict[str, Any]) -> Table:
    """Benchmark x accuracy, with the unweighted average as the last row."""
    table = Table(title=f"p2o eval (grader: {results.get('grader', 'strict')})")
    for name, justify in (("Benchmark", "left"), ("Acc %", "right"), ("Problems", "right"),
                          ("Samples", "right"), ("Protocol", "left"), ("Tokens", "right"),
                          ("Trunc %", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, r in results["benchmarks"].items():
        protocol = r["protocol"] if r["temperature"] == 0 else f"{r['protocol']} T={r['temperature']:g}"
        table.add_row(name, f"{r['accuracy']:.1f}", str(r["n_problems"]), str(r["samples_per_problem"]),
                      protocol, f"{r['mean_response_tokens']:.0f}", f"{r['truncation_rate']:.1f}")
    table.add_section()
    table.add_row("Average", f"{results['average']:.1f}", "", "", "", "", "", style="bold")
    return table


def measured_table(measured: dict[str, Any]) -> Any:
    """A rich table of :func:`measure_world`'s numbers (percentages)."""
    n = measured["n"]
    table = Table(title=f"toy world, T={measured['temperature']}, {n} samples per problem")
    for col in ("prompt", "bench", f"pass@{n} %", "acc %", "step-start %", "strength %"):
        table.add_column(col, justify="left" if col in ("prompt", "bench") else "right")
    best = measured["best_template"]["template"]
    for key, row in measured["runs"].items():
        label = key.rsplit("@", 1)[0]
        if label.startswith("trigger:") and row["template"] == best:
            label += "  (best)"
        table.add_row(
            label,
            row["bench"],
            f"{100 * row[f'pass@{n}']:.1f}",
            f"{100 * row['accuracy']:.1f}",
            f"{100 * row['step_start']:.1f}",
            f"{100 * row['strength']:.0f}" if row.get("strength") else "",
        )
    return table


def step_share_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> Table:
    """``p2o toy trace``: per run and epoch, the share of plain hard rollouts opening with a step."""
    table = Table("run", "epoch", "plain hard rollouts", "open with a step")
    for run, row in rows:
        share = "-" if row["share"] is None else f"{100 * row['share']:.1f}%"
        table.add_row(run, str(row["epoch"]), str(row["plain_hard_rollouts"]), share)
    return table


def gold_scan_table(flags: Sequence[Any]) -> Table:
    """``p2o data scan-golds``: each gold math-verify reads differently, and why it stays if it does."""
    table = Table("bench", "id", "gold", "math-verify reads", "flag", "why it stays", title="golds flagged")
    for f in flags:
        table.add_row(f.bench, f.id, f.gold[:60], f.parsed[:40], f.reason, f.explained or "[red]unexplained[/]")
    return table
