"""The prompt phase's options: the GEPA search and template assignment (the reflector's live with
its registry, in ``reflectors.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, k_option, option, section, seed_option
from ..data.prompts import PromptConfig
from .pareto import SELECTION_FLOOR


@dataclass
class GepaConfig(Config):
    width: int = option(16, min=1, help="W: parents per GEPA iteration.")
    minibatch: int = option(3, min=1, help="B: hard-train problems per proposal.")
    dev_size: int = option(300, min=1, help="GEPA dev problems (half the hard set when it has fewer than 1.5x this).")
    budget: int = option(11_000, min=0, help="GEPA budget in rollouts (evaluations on minibatches and dev).")
    max_iterations: int | None = option(None, min=0, help="Stop GEPA after this many iterations.")
    # GEPA evaluates the current policy greedily.
    gepa_temperature: float = option(0.0, min=0.0, help="GEPA evaluation temperature; 0 = greedy.")
    gepa_top_p: float = option(1.0, above=0.0, max=1.0, help="GEPA evaluation nucleus mass.")
    gepa_max_new_tokens: int | None = option(None, min=1, help="Response limit in GEPA evaluations "
                                                               "(default: --max-new-tokens in p2o run, 1024 in "
                                                               "p2o gepa).")
    # An unreachable reflector would otherwise be retried for every proposal of the whole budget.
    max_reflector_failures: int = option(3, min=1, help="Stop (exit 2, search saved) after this many proposals in "
                                                        "a row got no reply from the reflector.")
    selection_floor: float = option(SELECTION_FLOOR, min=0.0,
                                    help="Parent-sampling weight of a template that solves nothing.")
    seed: int = seed_option()
    prompt: PromptConfig = section(PromptConfig, shared=True)


@dataclass
class AssignConfig(Config):
    k: int = k_option()
    same_template_in_group: bool = option(False, help="Ablation: one template for all K rollouts of a problem.")
    seed: int = seed_option()
