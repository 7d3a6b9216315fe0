"""``p2o run``'s configuration: the loop's own options around the stage configs it contains."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, model_option, option, section, seed_option
from ..data.problems import DataConfig
from ..engines.config import EngineConfig
from ..errors import ConfigError
from ..evaluation.evaluate import PAPER_MAX_NEW_TOKENS, EvalConfig
from ..gepa.config import AssignConfig, GepaConfig
from ..gepa.reflectors import ReflectorConfig
from ..gepa.state import check_budget
from ..monitor.tracking import TrackingConfig
from ..reward.config import RewardConfig
from ..rl.config import TrainConfig
from ..rollout.generate import RolloutConfig
from ..rollout.mining import MiningConfig

# The benchmark-name suffix of the sampled evaluation's metrics (eval/BENCH-sampled/accuracy).
SAMPLED = "-sampled"


@dataclass
class RunConfig(Config):
    """Every key of a run. Each option is a ``p2o run`` flag and a config-file key (``[train] lr``)."""

    PANEL = "Run"

    model: str = model_option("Initial policy: model directory or hub id.")
    data: str = option("", required=True, metavar="PATH", panel="Data",
                       help="Training problems: JSONL/JSON/parquet file or hub id.")
    out: str = option("runs/p2o", metavar="DIR", help="Run directory (created).")
    resume: str | None = option(None, metavar="RUN_DIR", unset="none: a new run",
                                help="Continue the run in RUN_DIR (its saved config, then --config, then these flags).")
    allow_changed_data: bool = option(False, help="With --resume: go on although the training data or the starting "
                                                  "model changed since the run began (it then mixes old and new).")
    name: str | None = option(None, unset="the run directory's name", help="Run name in reports.")
    epochs: int = option(5, min=1, help="Passes over the training set.")
    batch_size: int = option(128, min=1, help="Problems per train step.")
    no_gepa: bool = option(False, help="Skip the prompt phase: the GRPO baseline.")
    min_hard: int = option(100, min=0, help="Run GEPA at epoch end only with at least this many hard problems.")
    eval_every: int = option(0, min=0, help="Evaluate every N train steps (0 = at the start and the end only).")
    eval_sampled_n: int = option(0, min=0, help="Also score each benchmark as the mean over N samples at the rollout "
                                                "temperature (eval/BENCH-sampled/accuracy; 0 = off): partial progress "
                                                "that greedy decoding hides.")
    save_every: int = option(1, min=0, help="Checkpoint every N train steps (and at each epoch end).")
    keep_last: int = option(2, min=1, help="Checkpoints kept.")
    gen_chunk: int = option(0, min=0, help="Sequences per generation chunk: every engine call is cut into chunks, "
                                           "each seeded on its own and dealt whole to one rank, so samples do not "
                                           "depend on the number of ranks (0 = --gen-batch-size).")
    seed: int = seed_option()
    problems: DataConfig = section(DataConfig)
    rollout: RolloutConfig = section(RolloutConfig, max_new_tokens=PAPER_MAX_NEW_TOKENS)
    # The loop sets the schedule's length from the epochs and the data.
    train: TrainConfig = section(TrainConfig, exclude=("total_steps",))
    mining: MiningConfig = section(MiningConfig)
    gepa: GepaConfig = section(GepaConfig)
    reflector: ReflectorConfig = section(ReflectorConfig)
    assign: AssignConfig = section(AssignConfig)
    eval: EvalConfig = section(EvalConfig)
    # The trainer's weights and optimizer stay resident beside the engine on the same GPU.
    engine: EngineConfig = section(EngineConfig, gpu_memory_utilization=0.5)
    tracking: TrackingConfig = section(TrackingConfig)
    reward: RewardConfig = section(RewardConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train.mini_batches > self.batch_size:
            raise ConfigError("--mini-batches cannot exceed --batch-size")
        if self.engine.engine == "openai":
            raise ConfigError("p2o run trains the policy, so it needs an engine it can update: hf or vllm")
        if self.rollout.k < 2:
            raise ConfigError(f"--k {self.rollout.k}: GRPO compares the rollouts of one problem, so one rollout "
                              "has a zero advantage and every step a zero gradient; use --k 2 or more")
        if not self.no_gepa:
            # The smallest hard set GEPA runs on: a budget that cannot score its dev set fails
            # for every epoch, so say it now, not after an epoch of training.
            check_budget(max(self.min_hard, 2), self.gepa)
