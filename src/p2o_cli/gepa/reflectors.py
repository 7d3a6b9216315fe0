"""Reflectors by name: a registry of factories that all take one signature.

``kimi``, ``openai`` and ``api`` are OpenAI-compatible endpoints, ``self`` is the policy model
through the local engine; other packages register their own (the toy world registers ``toy``
when :data:`PLUGINS` is first consulted), so this module imports nothing above it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engines.openai_client import make_client
from ..errors import P2OError
from .config import ReflectorConfig
from .reflect import (
    OpenAIReflector,
    Reflector,
    ReflectorError,
    RetryPolicy,
    SelfReflector,
    _cause,
)

# Modules that register reflectors, imported on the first look-up of a name not yet known.
PLUGINS = ("p2o_cli.toy.reflector",)


@dataclass
class ReflectorContext:
    """What a factory may need besides the config: the run's seed and the local engine."""

    seed: int = 0
    enable_thinking: bool = False
    engine: Any = None
    tokenizer: Any = None


ReflectorFactory = Callable[[str, ReflectorConfig, ReflectorContext], Reflector]
_FACTORIES: dict[str, ReflectorFactory] = {}


def register_reflector(*names: str) -> Callable[[ReflectorFactory], ReflectorFactory]:
    """Decorator: ``factory(name, cfg, context) -> Reflector`` under ``names``."""

    def register(factory: ReflectorFactory) -> ReflectorFactory:
        for name in names:
            if name in _FACTORIES:
                raise ValueError(f"reflector {name!r} is already registered")
            _FACTORIES[name] = factory
        return factory

    return register


def known_reflectors() -> list[str]:
    _load_plugins()
    return sorted(_FACTORIES)


def _load_plugins() -> None:
    for module in PLUGINS:
        importlib.import_module(module)


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
def _api_reflector(name: str, cfg: ReflectorConfig, context: ReflectorContext) -> Reflector:
    base_url, model, key_env = resolve_endpoint(name, cfg.reflector_url, cfg.reflector_model, cfg.reflector_key_env)
    return OpenAIReflector(base_url, model, api_key_from_env(key_env), timeout_s=cfg.reflector_timeout,
                           retry=RetryPolicy(max_retries=cfg.reflector_retries), concurrency=cfg.reflector_concurrency,
                           temperature=cfg.reflector_temperature, max_tokens=cfg.reflector_max_tokens)


@register_reflector("self")
def _self_reflector(name: str, cfg: ReflectorConfig, context: ReflectorContext) -> Reflector:
    if context.engine is None or context.tokenizer is None:
        raise ValueError("the self reflector needs the local engine and its tokenizer")
    return SelfReflector(context.engine, context.tokenizer,
                         temperature=0.7 if cfg.reflector_temperature is None else cfg.reflector_temperature,
                         max_new_tokens=cfg.reflector_max_tokens or 1024, enable_thinking=context.enable_thinking)


def reflector_from_config(cfg: ReflectorConfig, context: ReflectorContext | None = None) -> Reflector:
    """The reflector ``cfg.reflector`` names, built by its registered factory."""
    if cfg.reflector not in _FACTORIES:
        _load_plugins()
    factory = _FACTORIES.get(cfg.reflector)
    if factory is None:
        raise P2OError(f"unknown reflector {cfg.reflector!r}; choose one of {', '.join(known_reflectors())}")
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
    if _FACTORIES[cfg.reflector] is not _api_reflector:
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
