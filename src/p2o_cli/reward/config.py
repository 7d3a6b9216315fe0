"""The reward options every scoring command shares (rollout, eval, gepa, run), and the components
they name."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, option
from ..errors import ConfigError
from .specs import Component, component_name, load_reward, split_spec


@dataclass
class RewardConfig(Config):
    PANEL = "Reward"

    reward: list[str] = option(default_factory=lambda: ["math"], metavar="SPEC",
                               help="Reward (repeatable): math, exact, choice, regex:PATTERN (with a group "
                                    "(?P<answer>...)), code, a name installed under p2o.rewards, "
                                    "module:function or path/to/file.py:function.")
    reward_weights: str | None = option(None, metavar="W1,W2,...", unset="equal weights",
                                        help="Weights of the --reward components, comma-separated; the reward is "
                                             "their weighted mean.")
    reward_timeout: float = option(5.0, above=0.0, help="Seconds per answer check (a check running longer scores 0).")
    strict_format: bool = option(False, help="Reward only responses with exactly one \\boxed{}.")
    reward_memory: int = option(4096, min=0, help="MiB of memory each reward worker process may allocate "
                                                  "(0 = no limit); a reward that needs more fails on that item.")
    code_timeout: float = option(10.0, above=0.0, help="code reward: wall-clock seconds for one response and all "
                                                       "its tests.")
    code_memory: int = option(512, min=16, help="code reward: MiB of address space for one response's process.")

    def check(self) -> None:
        self.components()  # names, files and functions resolve before any model loads

    def weights(self) -> list[float]:
        if self.reward_weights is None:
            return [1.0] * len(self.reward)
        try:
            weights = [float(w) for w in self.reward_weights.split(",")]
        except ValueError:
            raise ConfigError(f"--reward-weights must be numbers separated by commas, got {self.reward_weights!r}") \
                from None
        if len(weights) != len(self.reward):
            raise ConfigError(f"--reward-weights gives {len(weights)} weights for {len(self.reward)} --reward "
                              "components")
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"--reward-weights must be non-negative with a positive sum, got {self.reward_weights}")
        return weights

    def components(self) -> list[Component]:
        """The rewards this config names, resolved (P2OError on an unknown name, file or function)."""
        if not self.reward:
            raise ConfigError("--reward: name at least one reward")
        out: list[Component] = []
        for spec, weight in zip(self.reward, self.weights()):
            target, options = split_spec(spec)
            load_reward(target)  # an unknown name, a missing file or function fails here
            if target == "code":
                options = {"timeout": self.code_timeout, "memory_mb": self.code_memory}
            elif "pattern" in options:
                from .builtins import compile_answer_pattern

                compile_answer_pattern(options["pattern"])
            time_limit = self.reward_timeout + (self.code_timeout if target == "code" else 0.0)
            name, taken, suffix = component_name(target), {c.name for c in out}, 2
            while name in taken:  # two regex rewards: regex, regex-2
                name, suffix = f"{component_name(target)}-{suffix}", suffix + 1
            out.append(Component(spec, name, target, weight, tuple(sorted(options.items())), time_limit))
        return out
