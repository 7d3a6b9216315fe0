"""``p2o toy sweep``: the paper's comparison on toy worlds, every variant from the same world,
seed and step budget, several seeds, then one aggregated report.

Layout of ``OUT``::

    world-S/                 the toy world of seed S (built if missing, reused otherwise)
    runs-S/VARIANT/          one ``p2o run`` directory per variant
    logs/S-VARIANT.log       its output (and world-S.log for the world build)
    report/                  sweep.md, sweep.json and the plots (``p2o report --aggregate``)

Every job is a ``p2o`` subprocess, so runs resume (a finished run is not recomputed, an
interrupted one continues with ``--resume``) and ``jobs`` of them share the machine; each gets
an equal share of the cores as its torch thread count.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson

from ..errors import P2OError

# Each variant's flags on top of the toy run config (toy/run.toml), whose P²O is the paper's:
# group baseline, context distillation on the original prompt, ratio mask off.
VARIANTS: dict[str, tuple[str, ...]] = {
    "grpo": ("--no-gepa",),
    "p2o": (),
    "p2o-plain-baseline": ("--templated-baseline", "plain"),
    "p2o-plain-in-group": ("--plain-in-group", "1"),
    "p2o-no-distill": ("--distill", "none"),
    "p2o-same-template": ("--same-template-in-group",),
    "p2o-ratio-mask": ("--template-ratio-mask", "0.01,10"),
}
# The paper's names for the variants, as figures and p2o report call them (the one place they live).
NAMES: dict[str, str] = {
    "grpo": "GRPO",
    "p2o": "P²O",
    "p2o-plain-baseline": "P²O, plain baseline",
    "p2o-plain-in-group": "P²O, plain in group",
    "p2o-no-distill": "P²O w/o CD",
    "p2o-same-template": "P²O, same template",
    "p2o-ratio-mask": "P²O + ratio mask",
}
# The sweep tables' row names: the variant and the flags that make it.
LABELS: dict[str, str] = {
    "grpo": "GRPO (`--no-gepa`)",
    "p2o": "P²O, paper's group baseline",
    "p2o-plain-baseline": "P²O, plain baseline (`--templated-baseline plain`)",
    "p2o-plain-in-group": "P²O, one plain rollout per group (`--plain-in-group 1`)",
    "p2o-no-distill": "P²O w/o distillation (`--distill none`)",
    "p2o-same-template": "P²O, same template in group",
    "p2o-ratio-mask": "P²O + ratio mask [0.01, 10]",
}


def toy_run_config() -> Path:
    """The packaged toy run config (``toy/run.toml``)."""
    return Path(str(resources.files("p2o_cli.toy").joinpath("run.toml")))


def parse_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise P2OError(f"--{what}: give at least one, separated by commas")
    return items


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in parse_list(text, "seeds")]
    except ValueError:
        raise P2OError(f"--seeds: integers separated by commas, got {text!r}") from None


def parse_variants(text: str) -> list[str]:
    names = list(VARIANTS) if text.strip() == "all" else parse_list(text, "variants")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise P2OError(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    return names


@dataclass(frozen=True)
class SweepPlan:
    out: Path
    seeds: list[int]
    variants: list[str]
    config: Path
    jobs: int
    world_args: tuple[str, ...] = ()  # extra `p2o toy init` flags (e.g. --trigger-strength 1.0)
    run_args: tuple[str, ...] = ()  # extra `p2o run` flags for every variant

    def world(self, seed: int) -> Path:
        return self.out / f"world-{seed}"

    def run_dir(self, seed: int, variant: str) -> Path:
        return self.out / f"runs-{seed}" / variant

    def log(self, name: str) -> Path:
        return self.out / "logs" / f"{name}.log"


def run_state(run_dir: Path) -> str:
    """``"new"``, ``"partial"`` (resume it) or ``"done"``."""
    state = run_dir / "state.json"
    if not state.is_file():
        return "new"
    return "done" if orjson.loads(state.read_bytes()).get("done") else "partial"


def world_command(plan: SweepPlan, seed: int) -> list[str] | None:
    if (plan.world(seed) / "world.json").is_file() or refusal(plan.world(seed)).is_file():
        return None
    return ["toy", "init", "--out", str(plan.world(seed)), "--seed", str(seed), "--force", *plan.world_args]


def run_command(plan: SweepPlan, seed: int, variant: str) -> list[str] | None:
    """The ``p2o`` arguments that bring this run to its end (None: it is finished)."""
    out = plan.run_dir(seed, variant)
    state = run_state(out)
    if state == "done":
        return None
    if state == "partial":
        return ["run", "--resume", str(out)]
    world = plan.world(seed)
    return ["run", "--config", str(plan.config), "--model", str(world / "model"), "--data",
            str(world / "train.jsonl"), "--data-dir", str(world / "bench"), "--seed", str(seed),
            "--out", str(out), "--name", variant, *VARIANTS[variant], *plan.run_args]


def _run_p2o(args: list[str], log: Path, threads: int, refusable: bool = False) -> float | None:
    """Run ``p2o ARGS`` into ``log``; its wall-clock seconds, or None when it refused its input
    (status 2) and ``refusable``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "P2O_PROGRESS_INTERVAL": "60"}
    start = time.perf_counter()
    with open(log, "ab") as sink:
        code = subprocess.call([sys.executable, "-m", "p2o_cli", *args], stdout=sink, stderr=subprocess.STDOUT,
                               env=env)
    if code == 2 and refusable:
        return None
    if code != 0:
        raise P2OError(f"p2o {' '.join(args[:2])} failed with status {code}; see {log}")
    return time.perf_counter() - start


def refusal(world_dir: Path) -> Path:
    """Where the sweep notes that ``toy init`` refused this world (so a resumed sweep does not
    build it again)."""
    return world_dir.with_name(world_dir.name + ".refused")


def world_problem(world_dir: Path) -> str | None:
    """Why the sweep will not run on this world (None: it is usable): missing, unmeasured, or
    missing a target."""
    from .world import WORLD, missed_targets

    path = world_dir / WORLD
    if refusal(world_dir).is_file():
        return refusal(world_dir).read_text().strip()
    if not path.is_file():
        return "not built"
    measured = orjson.loads(path.read_bytes()).get("measured")
    if not measured:
        return f"not measured (p2o toy measure {world_dir})"
    missed = missed_targets(measured)
    return "; ".join(missed) if missed else None


@dataclass(frozen=True)
class Job:
    name: str
    args: list[str]
    needs: str | None = None  # the job that must finish first (a run's world)
    world: int | None = None  # a run's world seed (None: the job builds a world)


def run_ready_first(jobs: list[Job], workers: int, run: Callable[[Job], None]) -> None:
    """Run ``jobs`` on ``workers`` threads, each worker taking the first job whose ``needs`` has
    finished, so a run whose world is still being built never holds a worker (and a core) while
    runs of built worlds wait. The first failure stops new jobs from starting and is re-raised."""
    unknown = {j.needs for j in jobs if j.needs is not None} - {j.name for j in jobs}
    if unknown:
        raise ValueError(f"jobs need jobs that are not in the list: {sorted(unknown)}")
    pending, done, failures = list(jobs), set(), []
    ready = threading.Condition()

    def worker() -> None:
        while True:
            with ready:
                while True:
                    if failures or not pending:
                        return
                    job = next((j for j in pending if j.needs is None or j.needs in done), None)
                    if job is not None:
                        pending.remove(job)
                        break
                    ready.wait()
            try:
                run(job)
            except BaseException as error:  # noqa: BLE001 (handed to the caller below)
                with ready:
                    failures.append(error)
                    ready.notify_all()
                return
            with ready:
                done.add(job.name)
                ready.notify_all()

    threads = [threading.Thread(target=worker, name=f"sweep-{i}") for i in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def run_sweep(plan: SweepPlan, say: Callable[[str], None] = print) -> dict[str, float]:
    """Build the missing worlds, bring every run to its end; wall-clock seconds per job."""
    threads = max(1, (os.cpu_count() or 1) // plan.jobs)
    seconds: dict[str, float] = {}
    jobs = [Job(f"world-{seed}", args) for seed in plan.seeds if (args := world_command(plan, seed))]
    building = {job.name for job in jobs}
    # Variant by variant, so a sweep cut short has whole rows rather than whole seeds.
    for variant in plan.variants:
        for seed in plan.seeds:
            args = run_command(plan, seed, variant)
            if args is None:
                say(f"skip  {seed}-{variant}: finished")
                continue
            world = f"world-{seed}"
            jobs.append(Job(f"{seed}-{variant}", args, world if world in building else None, seed))

    def run(job: Job) -> None:
        if job.world is not None and (problem := world_problem(plan.world(job.world))):
            say(f"skip  {job.name}: world {job.world} is not usable ({problem})")
            return
        say(f"start {job.name}: p2o {' '.join(job.args)}")
        took = _run_p2o(job.args, plan.log(job.name), threads, refusable=job.world is None)
        if took is None:
            lines = plan.log(job.name).read_text(errors="replace").strip().splitlines()
            refusal(plan.out / job.name).write_text((lines[-1] if lines else "refused") + "\n")
            say(f"refused {job.name}: it misses its targets (see {plan.log(job.name)}); its runs are skipped")
            return
        seconds[job.name] = took
        say(f"done  {job.name} in {took / 60:.1f} min")

    run_ready_first(jobs, plan.jobs, run)
    return seconds


def world_table(plan: SweepPlan) -> str:
    """Markdown: per world, its build time, the targets' measurements (``p2o toy measure``, T=1;
    toy-easy greedy), each acting phrase's strength against the share of samples that opened
    with a step under it, and whether the world met its targets."""
    from .world import ACTING, missed_targets, short_misses

    lines = ["| world | build (min) | toy-easy greedy | plain toy-hard: step-start, pass@n | best template pass@n "
             "| acting phrases: strength → measured step-start | targets |", "|---|---|---|---|---|---|---|"]
    for seed in plan.seeds:
        path = plan.world(seed) / "world.json"
        if refusal(plan.world(seed)).is_file():
            lines.append(f"| seed {seed} | | | | | | refused: {refusal(plan.world(seed)).read_text().strip()} |")
            continue
        world = orjson.loads(path.read_bytes()) if path.is_file() else {}
        measured = world.get("measured")
        if not measured:
            lines.append(f"| seed {seed} | not measured | | | | | |")
            continue
        plain, n = measured["plain_hard"], measured["n"]
        acting = [row for key, row in measured["runs"].items() if key.startswith(ACTING)]
        cells = ", ".join(f"{100 * row['strength']:.0f} → {100 * row['step_start']:.0f}%"
                          for row in sorted(acting, key=lambda r: -r.get("strength", 1.0)))
        easy = measured.get("plain_easy_greedy")
        minutes = (world.get("build_seconds")
                   or world.get("pretrain", {}).get("seconds", 0) + measured.get("seconds", 0)) / 60
        missed = missed_targets(measured)
        easy_cell = f"{100 * easy['accuracy']:.1f}%" if easy else "–"
        lines.append(f"| seed {seed} | {minutes:.1f} | {easy_cell} "
                     f"| {100 * plain['step_start']:.1f}%, {100 * plain[f'pass@{n}']:.1f}% "
                     f"| {100 * measured['best_template'][f'pass@{n}']:.1f}% | {cells} "
                     f"| {'all met' if not missed else 'missed: ' + short_misses(missed)} |")
    return "\n".join(lines) + "\n"


def sweep_run_dirs(plan: SweepPlan) -> list[Path]:
    """The finished runs, variant by variant (the report's ``seeds`` column counts them)."""
    return [plan.run_dir(s, v) for v in plan.variants for s in plan.seeds if run_state(plan.run_dir(s, v)) == "done"]
