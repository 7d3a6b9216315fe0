"""The prompt phase's options: the GEPA search, the reflector, template assignment."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, k_option, option, section, seed_option
from ..prompts import PromptConfig
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
                                                               "(default: --max-new-tokens).")
    # An unreachable reflector would otherwise be retried for every proposal of the whole budget.
    max_reflector_failures: int = option(3, min=1, help="Stop (exit 2, search saved) after this many proposals in "
                                                        "a row got no reply from the reflector.")
    selection_floor: float = option(SELECTION_FLOOR, min=0.0,
                                    help="Parent-sampling weight of a template that solves nothing.")
    seed: int = seed_option()
    prompt: PromptConfig = section(PromptConfig, shared=True)


@dataclass
class ReflectorConfig(Config):
    reflector: str = option("kimi", help="A registered reflector: kimi, openai, api (any OpenAI-compatible URL), "
                                         "self (the policy model), toy (the toy world's).")
    reflector_url: str | None = option(None, help="Reflector chat-completions base URL (overrides the preset).")
    reflector_model: str | None = option(None, help="Reflector model name (API) or model directory (self).")
    reflector_key_env: str | None = option(None, help="Environment variable holding the reflector's API key.")
    reflector_timeout: float = option(300.0, min=1.0, help="Seconds per reflector request.")
    reflector_retries: int = option(6, min=0, help="Reflector retries on 429/5xx/timeouts.")
    reflector_concurrency: int = option(8, min=1, help="Reflector requests in flight.")
    reflector_temperature: float | None = option(None, min=0.0, help="Reflector sampling temperature "
                                                                    "(default: the provider's; 0.7 for self).")
    reflector_max_tokens: int | None = option(None, min=1, help="Longest reflector answer.")

    def check(self) -> None:
        from ..errors import ConfigError
        from .reflectors import known_reflectors

        if self.reflector not in known_reflectors():
            raise ConfigError(f"unknown reflector {self.reflector!r}; choose one of {', '.join(known_reflectors())}")


@dataclass
class AssignConfig(Config):
    k: int = k_option()
    same_template_in_group: bool = option(False, help="Ablation: one template for all K rollouts of a problem.")
    seed: int = seed_option()
