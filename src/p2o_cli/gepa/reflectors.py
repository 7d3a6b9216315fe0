"""Reflectors by name: their options, and a registry of factories that all take one signature.

``kimi``, ``openai`` and ``api`` are OpenAI-compatible endpoints, ``self`` is the policy model
through the local engine. Other packages offer their own through the ``p2o.reflectors``
entry-point group (the toy world's ``toy`` comes that way), so nothing here names them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Config, option
from ..engines.openai_client import make_client
from ..errors import ConfigError, P2OError
from ..plugins import Registry
from .reflect import (
    OpenAIReflector,
    Reflector,
    ReflectorError,
    RetryPolicy,
    SelfReflector,
    _cause,
)

ReflectorFactory = Callable[[str, "ReflectorConfig", "ReflectorContext"], Reflector]
# The self reflector's sampling where the options leave it unset (API reflectors: the provider's).
SELF_TEMPERATURE = 0.7
SELF_MAX_TOKENS = 1024
# ``factory(name, cfg, context) -> Reflector`` by name.
REFLECTORS: Registry[ReflectorFactory] = Registry("reflector", "p2o.reflectors")
register_reflector = REFLECTORS.register
known_reflectors = REFLECTORS.names


@dataclass
class ReflectorConfig(Config):
    PANEL = "GEPA"

    reflector: str = option("kimi", registry=REFLECTORS,
                            help="Who proposes templates: kimi or openai (their APIs), api (any OpenAI-compatible "
                                 "URL), self (the policy model), or one an installed package offers.")
    reflector_url: str | None = option(None, metavar="URL", unset="the preset's",
                                       help="Reflector chat-completions base URL.")
    reflector_model: str | None = option(None, metavar="NAME", unset="the preset's; self: the policy model",
                                         help="Reflector model name (API), or model directory for self in p2o gepa "
                                              "(p2o run's self is the initial policy).")
    reflector_key_env: str | None = option(None, metavar="VAR", unset="the preset's",
                                           help="Environment variable holding the reflector's API key.")
    reflector_timeout: float = option(300.0, min=1.0, help="Seconds per reflector request.")
    reflector_retries: int = option(6, min=0, help="Reflector retries on 429/5xx/timeouts.")
    reflector_concurrency: int = option(8, min=1, help="Reflector requests in flight.")
    reflector_temperature: float | None = option(None, min=0.0, unset=f"the provider's; self: {SELF_TEMPERATURE}",
                                                 help="Reflector sampling temperature.")
    reflector_max_tokens: int | None = option(None, min=1, unset=f"the provider's; self: {SELF_MAX_TOKENS}",
                                              help="Longest reflector answer.")

    def check(self) -> None:
        if self.reflector not in REFLECTORS:
            raise ConfigError(f"unknown reflector {self.reflector!r}; choose one of {', '.join(REFLECTORS.names())}")


@dataclass
class ReflectorContext:
    """What a factory may need besides the config: the run's seed and the local engine."""

    seed: int = 0
    enable_thinking: bool = False
    engine: Any = None
    tokenizer: Any = None


@dataclass(frozen=True)
class Preset:
    base_url: str
    model: str
    key_env: str


# Kimi K2 on Moonshot's international endpoint. The 2025 preview ids (kimi-k2-0905-preview …)
# were retired in 2026; kimi-k2.6 is the current K2 model. Override with --reflector-model.
PRESETS: dict[str, Preset] = {
    "kimi": Preset("https://api.moonshot.ai/v1", "kimi-k2.6", "MOONSHOT_API_KEY"),
    "openai": Preset("https://api.openai.com/v1", "gpt-4.1-mini", "OPENAI_API_KEY"),
}


def resolve_endpoint(name: str, url: str | None, model: str | None, key_env: str | None) -> tuple[str, str, str | None]:
    """(base_url, model, key env var) for an API reflector; P2OError on what is missing."""
    if name in PRESETS:
        preset = PRESETS[name]
        return url or preset.base_url, model or preset.model, key_env or preset.key_env
    if not url or not model:
        raise P2OError(f"--reflector {name} needs --reflector-url and --reflector-model")
    return url, model, key_env


def api_key_from_env(key_env: str | None) -> str:
    """The key in ``$key_env``; a missing variable is named in the error, its value never shown."""
    if key_env is None:
        return "EMPTY"  # local OpenAI-compatible servers (vLLM, SGLang) accept any key
    value = os.environ.get(key_env, "").strip()
    if not value:
        raise P2OError(f"environment variable {key_env} is not set; it must hold the reflector's API key")
    return value


@register_reflector("kimi", "openai", "api")
def api_reflector(name: str, cfg: ReflectorConfig, context: ReflectorContext) -> Reflector:
    base_url, model, key_env = resolve_endpoint(name, cfg.reflector_url, cfg.reflector_model, cfg.reflector_key_env)
    return OpenAIReflector(base_url, model, api_key_from_env(key_env), timeout_s=cfg.reflector_timeout,
                           retry=RetryPolicy(max_retries=cfg.reflector_retries), concurrency=cfg.reflector_concurrency,
                           temperature=cfg.reflector_temperature, max_tokens=cfg.reflector_max_tokens)


@register_reflector("self")
def self_reflector(name: str, cfg: ReflectorConfig, context: ReflectorContext) -> Reflector:
    if context.engine is None or context.tokenizer is None:
        raise ValueError("the self reflector needs the local engine and its tokenizer")
    temperature = cfg.reflector_temperature
    return SelfReflector(context.engine, context.tokenizer,
                         temperature=SELF_TEMPERATURE if temperature is None else temperature,
                         max_new_tokens=cfg.reflector_max_tokens or SELF_MAX_TOKENS,
                         enable_thinking=context.enable_thinking)


def reflector_from_config(cfg: ReflectorConfig, context: ReflectorContext | None = None) -> Reflector:
    """The reflector ``cfg.reflector`` names, built by its registered factory."""
    factory = REFLECTORS.get(cfg.reflector)
    return factory(cfg.reflector, cfg, context or ReflectorContext())


def make_reflector(name: str, *, seed: int = 0, engine: Any = None, tokenizer: Any = None,
                   enable_thinking: bool = False, **options: Any) -> Reflector:
    """Library shortcut: ``make_reflector("api", url=…, model=…)``; options are ReflectorConfig fields
    without their ``reflector_`` prefix (``url``, ``model``, ``key_env``, ``timeout``, ``retries``,
    ``concurrency``, ``temperature``, ``max_tokens``)."""
    cfg = ReflectorConfig(reflector=name, **{f"reflector_{key}": value for key, value in options.items()})
    return reflector_from_config(cfg, ReflectorContext(seed, enable_thinking, engine, tokenizer))


def check_reflector(cfg: ReflectorConfig, timeout_s: float = 5.0) -> None:
    """Fail fast (ReflectorError/P2OError) on a reflector that cannot work: call before loading models.

    Checks the name, that the key's environment variable is set, and that the endpoint answers
    one short ``GET /models`` within ``timeout_s`` without refusing the key. Reflectors that
    are not endpoints (``self``, ``toy``) need no check beyond their name.
    """
    import openai

    cfg.check()
    if REFLECTORS.get(cfg.reflector) is not api_reflector:
        return
    base_url, _, env = resolve_endpoint(cfg.reflector, cfg.reflector_url, cfg.reflector_model, cfg.reflector_key_env)
    client = make_client(base_url, api_key=api_key_from_env(env), timeout=timeout_s)
    try:
        client.models.list()
    except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
        raise ReflectorError(
            f"reflector endpoint {base_url} refused the API key in ${env} (HTTP {err.status_code})"
        ) from None
    except openai.APIStatusError:
        pass  # it answered: reachable (some servers serve no model list)
    except (openai.APITimeoutError, openai.APIConnectionError) as err:
        raise ReflectorError(
            f"reflector endpoint {base_url} cannot be reached ({_cause(err)} within {timeout_s:g}s); "
            "check the network and --reflector-url"
        ) from None
    finally:
        client.close()
