"""The prompt phase's options: the GEPA search and template assignment (the reflector's live with
its registry, in ``reflectors.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MAX_NEW_TOKENS, Config, k_option, option, section, seed_option
from ..data.prompts import PromptConfig
from ..errors import ConfigError
from .pareto import SELECTION_FLOOR


@dataclass
class GepaConfig(Config):
    PANEL = "GEPA"

    width: int = option(16, min=1, help="W: parents per GEPA iteration.")
    minibatch: int = option(3, min=1, help="B: hard-train problems per proposal.")
    dev_size: int = option(300, min=1, help="GEPA dev problems (half the hard set when it has fewer than 1.5x this).")
    budget: int = option(11_000, min=0, help="GEPA budget in rollouts (evaluations on minibatches and dev).")
    max_iterations: int | None = option(None, min=0, unset="no limit: the budget decides",
                                        help="Stop GEPA after this many iterations.")
    # GEPA evaluates the current policy greedily.
    gepa_temperature: float = option(0.0, min=0.0, help="GEPA evaluation temperature; 0 = greedy.")
    gepa_top_p: float = option(1.0, above=0.0, max=1.0, help="GEPA evaluation nucleus mass.")
    # As long as the rollouts' responses where the command has them (p2o run), so templates are
    # measured under the budget the hard problems failed in.
    gepa_max_new_tokens: int = option(MAX_NEW_TOKENS, min=1, follows="max_new_tokens", help="Response limit in GEPA "
                                                                                   "evaluations.")
    # An unreachable reflector would otherwise be retried for every proposal of the whole budget.
    max_reflector_failures: int = option(3, min=1, help="Stop (exit 2, search saved) after this many proposals in "
                                                        "a row got no reply from the reflector.")
    selection_floor: float = option(SELECTION_FLOOR, min=0.0,
                                    help="Parent-sampling weight of a template that solves nothing.")
    seed: int = seed_option()
    prompt: PromptConfig = section(PromptConfig, shared=True)


@dataclass
class AssignConfig(Config):
    PANEL = "GEPA"

    k: int = k_option()
    same_template_in_group: bool = option(False, help="Ablation: one template for all K rollouts of a problem.")
    # Under the group baseline, a behaviour every templated rollout shares gets advantages summing
    # to zero; a rollout of the policy's own (plain) prompt in the group gives it a contrast.
    plain_in_group: int = option(0, min=0, help="Rollouts of each templated group that get the empty template "
                                                "(the plain prompt) instead, as an on-policy contrast inside "
                                                "the group (0 = the paper: K templates).")
    seed: int = seed_option()

    def check(self) -> None:
        if self.plain_in_group >= self.k:
            raise ConfigError(f"--plain-in-group must be below --k ({self.k}), got {self.plain_in_group}")
