"""The P²O paper's published accuracies, for `p2o eval --compare paper` and `p2o report --compare paper`.

Figures are copied from the paper's Tables 1 and 2 (percent, Qwen2.5-Math evaluation suite;
AIME24/AIME25/AMC23 avg@16 at T=0.6, the others greedy). A reproduction scored with
``--grader strict`` reads no unboxed answers, so expect it to sit below these; ``--grader qwen``
is the comparable one (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rich.table import Table

from ..errors import P2OError
from .benchmarks import SAMPLE_TEMPERATURE, SAMPLES, SMALL_BENCH
from .evaluate import PAPER_PROTOCOL, EvalConfig

SOURCE = "P²O (Joint Policy and Prompt Optimization), arXiv 2603.21877, Tables 1 and 2"
# Column order of the paper's tables, as p2o's benchmark names.
BENCHES = ("aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench")
COMPARE_CHOICES = ("paper",)


@dataclass(frozen=True)
class PaperRow:
    table: str
    model: str
    train_set: str | None
    scores: tuple[float, ...]  # in BENCHES order
    average: float  # as printed in the paper (the unweighted mean of the six)

    @property
    def label(self) -> str:
        where = f", {self.train_set}" if self.train_set else ""
        return f"{self.model}{where} [{self.table}]"


def _row(table: str, model: str, train_set: str | None, *values: float) -> PaperRow:
    *scores, average = values
    return PaperRow(table, model, train_set, tuple(scores), average)


PAPER_ROWS: tuple[PaperRow, ...] = (
    _row("T1", "Qwen3-0.6B", None, 2.1, 1.9, 30.2, 53.8, 12.5, 19.4, 19.6),
    _row("T1", "Qwen3-1.7B", None, 13.1, 10.2, 47.7, 72.8, 22.1, 38.4, 34.1),
    _row("T1", "Qwen3-4B-Base", None, 9.2, 5.8, 37.7, 67.4, 32.4, 35.6, 31.9),
    _row("T1", "Qwen3-4B", None, 23.8, 19.4, 68.0, 82.8, 31.6, 49.9, 45.9),
    _row("T1", "GRPO", "DeepMath-5K", 33.8, 29.0, 79.5, 87.6, 41.5, 57.5, 54.8),
    _row("T1", "P²O Self-Ref", "DeepMath-5K", 52.1, 39.8, 85.3, 90.2, 41.9, 60.9, 61.7),
    _row("T1", "P²O Teacher-Ref", "DeepMath-5K", 44.6, 34.4, 81.9, 90.2, 36.0, 60.0, 57.9),
    _row("T1", "GRPO", "DeepScaler-5K", 46.9, 37.7, 88.1, 90.4, 41.5, 58.2, 60.5),
    _row("T1", "P²O Self-Ref", "DeepScaler-5K", 51.5, 42.1, 88.1, 91.0, 40.1, 61.8, 62.4),
    _row("T1", "P²O Teacher-Ref", "DeepScaler-5K", 59.8, 49.4, 92.2, 91.4, 36.4, 62.2, 65.2),
    # Table 2 (ablations; Teacher-Ref, DeepScaler-5K); its first three rows repeat Table 1.
    _row("T2", "P²O w/o context distillation", "DeepScaler-5K", 36.5, 31.5, 81.1, 89.6, 40.1, 54.8, 55.6),
    _row("T2", "P²O same template in group", "DeepScaler-5K", 57.3, 44.6, 88.9, 90.8, 40.4, 63.0, 64.2),
)


def check_compare(value: str | None) -> str | None:
    if value is not None and value not in COMPARE_CHOICES:
        raise P2OError(f"--compare must be one of: {', '.join(COMPARE_CHOICES)}; got {value!r}")
    return value


def comparison_rows(runs: Mapping[str, Mapping[str, float]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: each run's accuracy per benchmark, then every paper row.

    The last column, Δ, is the run's mean minus the paper row's mean over the benchmarks the run
    has (so a run on three benchmarks is compared on those three), one column per run.
    """
    run_names = list(runs)
    header = ["model", *BENCHES, "AVG", *(f"Δ {name}" for name in run_names)]
    rows: list[list[str]] = []
    for name, scores in runs.items():
        present = [scores[b] for b in BENCHES if b in scores]
        mean = f"{sum(present) / len(present):.1f}" if present else "–"
        cells = [f"{scores[b]:.1f}" if b in scores else "–" for b in BENCHES]
        rows.append([name, *cells, mean, *("" for _ in run_names)])
    for paper in PAPER_ROWS:
        deltas = []
        for scores in runs.values():
            shared = [i for i, b in enumerate(BENCHES) if b in scores]
            if not shared:
                deltas.append("–")
                continue
            run_mean = sum(scores[BENCHES[i]] for i in shared) / len(shared)
            paper_mean = sum(paper.scores[i] for i in shared) / len(shared)
            deltas.append(f"{run_mean - paper_mean:+.1f}")
        rows.append([paper.label, *(f"{v:.1f}" for v in paper.scores), f"{paper.average:.1f}", *deltas])
    return header, rows


def protocol_differences(cfg: EvalConfig) -> list[str]:
    """How ``cfg`` evaluates otherwise than the paper did (empty when it follows the paper's protocol)."""
    paper_sizes = f"paper: {SAMPLES} at T={SAMPLE_TEMPERATURE:g} under {SMALL_BENCH} problems, else greedy"
    found = []
    if cfg.grader != PAPER_PROTOCOL["grader"]:
        found.append(f"--grader {cfg.grader} (paper: {PAPER_PROTOCOL['grader']})")
    if cfg.eval_max_new_tokens != PAPER_PROTOCOL["eval_max_new_tokens"]:
        found.append(f"--eval-max-new-tokens {cfg.eval_max_new_tokens:,} "
                     f"(paper: {PAPER_PROTOCOL['eval_max_new_tokens']:,})")
    if cfg.eval_n is not None and cfg.eval_n != SAMPLES:
        found.append(f"--eval-n {cfg.eval_n} ({paper_sizes})")
    if cfg.eval_temperature is not None:
        found.append(f"--eval-temperature {cfg.eval_temperature:g} ({paper_sizes})")
    if cfg.eval_limit is not None:
        found.append(f"--eval-limit {cfg.eval_limit} (paper: every problem)")
    return found


def paper_table(runs: Mapping[str, Mapping[str, float]], differences: list[str] | None = None) -> Table:
    """The comparison as a terminal table; ``differences`` (see :func:`protocol_differences`) go in its caption."""
    header, rows = comparison_rows(runs)
    caption = SOURCE + (f"\nnot the paper's protocol: {'; '.join(differences)}" if differences else "")
    table = Table(title="beside the paper", caption=caption)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if i < len(runs) else None, end_section=i == len(runs) - 1)
    return table


def paper_markdown(runs: Mapping[str, Mapping[str, float]]) -> str:
    header, rows = comparison_rows(runs)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + f"\n\nPaper figures: {SOURCE}.\n"
