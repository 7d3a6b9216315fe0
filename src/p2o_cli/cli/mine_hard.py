"""``p2o mine-hard``: the problems the policy almost never solves."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from ..config import Config, option, section
from ..rollout.mining import MiningConfig
from .app import app
from .options import command


@dataclass
class MineHardJob(Config):
    rollouts: str = option("-", metavar="PATH", help="Rollouts JSONL (- = stdin).")
    out: str = option("-", metavar="PATH", help="Hard problems JSONL (- = stdout).")
    mining: MiningConfig = section(MiningConfig)


@command(app, "mine-hard", MineHardJob)
def mine_hard(job: MineHardJob) -> None:
    """Problems whose mean reward is below τ, with their failed responses."""
    from ..files.outputs import check_outputs
    from ..files.records import Rollout, read_records, write_records
    from ..rollout.mining import mine_hard as mine

    check_outputs({"--out": (job.out, "file")}, {"--rollouts": job.rollouts})
    records = read_records(job.rollouts, Rollout, allow_empty=False)
    hard = mine(records, tau=job.mining.tau, max_failures=job.mining.max_failures)
    write_records(job.out, hard)
    n_problems = len({r.id for r in records})
    typer.echo(f"{len(hard)} of {n_problems} problems are hard (mean reward < {job.mining.tau})", err=True)
