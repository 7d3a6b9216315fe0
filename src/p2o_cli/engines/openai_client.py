"""One small retrying client for OpenAI-compatible servers, shared by the openai engine and
every API reflector (``gepa/reflect.py``): one set of retryable statuses, one backoff.

- ``make_client(base_url, api_key=…, api_key_env=…, timeout=…)``: an ``openai.OpenAI`` whose own
  retries are off (``with_retries`` does them, the same way for every caller).
- ``with_retries(fn, max_retries=…, base_delay=…)``: calls ``fn()``; on a transient error (429,
  408/409, any 5xx, a timeout or a dropped connection) sleeps ``base_delay * 2**attempt``
  (capped at ``max_delay``, "full jitter": a uniform draw below that, but at least the server's
  ``Retry-After``) and tries again; other errors (400, 401, 404 …) are raised at once.
- ``map_bounded(fn, items, max_workers, on_done=…)``: ``[fn(x) for x in items]`` on a bounded
  thread pool, results in input order, ``on_done(index, result)`` as each finishes; the first
  failure cancels what has not started and is raised. A Ctrl-C (or SIGTERM) of the caller
  cancels it too, and wakes its workers from their back-off sleeps at once.

The key a client is made with is registered with :func:`~p2o_cli.errors.register_secret`, so
no error message shows it, even when a server echoes it back.

Example (a reflector)::

    client = make_client("http://127.0.0.1:8000/v1")
    reply = with_retries(lambda: client.chat.completions.create(model=name, messages=msgs))
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from ..errors import register_secret

T = TypeVar("T")
R = TypeVar("R")

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# Local servers (vllm serve, SGLang) accept any key, but the client insists on one.
PLACEHOLDER_API_KEY = "EMPTY"


def make_client(
    base_url: str | None = None,
    api_key: str | None = None,
    api_key_env: str = DEFAULT_API_KEY_ENV,
    timeout: float = 600.0,
) -> Any:
    """An ``openai.OpenAI`` client for ``base_url`` (None: ``$OPENAI_BASE_URL``, else OpenAI's).

    The key is ``api_key``, else ``$api_key_env``, else a placeholder (fine for local servers).
    The client's own retries are disabled; wrap calls in ``with_retries``.
    """
    import openai

    key = api_key or os.environ.get(api_key_env) or PLACEHOLDER_API_KEY
    register_secret(key if key != PLACEHOLDER_API_KEY else None)
    return openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)


def status_of(err: BaseException) -> int | None:
    status = getattr(err, "status_code", None)
    if status is None:
        status = getattr(getattr(err, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(err: BaseException) -> bool:
    """Transient: rate limits, server errors, timeouts, dropped connections."""
    try:
        import openai

        if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
            return True
    except ImportError:  # pragma: no cover - openai is a dependency
        pass
    if isinstance(err, (TimeoutError, ConnectionError)):
        return True
    status = status_of(err)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def retry_after(err: BaseException) -> float | None:
    """The server's Retry-After (seconds; ``retry-after-ms`` too), when it sent one."""
    headers = getattr(getattr(err, "response", None), "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(float(value) * scale, 0.0)
            except ValueError:
                return None
    return None


class Cancelled(Exception):
    """The caller of :func:`map_bounded` was interrupted: a worker stops instead of retrying."""


# The cancel event of the map_bounded call a worker thread is serving (unset outside one).
_worker = threading.local()


def backoff_sleep(seconds: float) -> None:
    """Sleep, but wake at once (raising Cancelled) when the map_bounded call served is cancelled.

    The main thread sleeps plainly: a signal interrupts its sleep by itself."""
    cancel: threading.Event | None = getattr(_worker, "cancel", None)
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise Cancelled


def with_retries(
    fn: Callable[[], T],
    max_retries: int = 6,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    retry_on: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], None] = backoff_sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """``fn()``, retried up to ``max_retries`` times on transient errors with backoff + jitter.

    ``on_retry(error, attempt, delay)`` is told of each retry before its sleep (for counting
    and logging).
    """
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as err:
            if attempt >= max_retries or not retry_on(err):
                raise
            delay = backoff_delay(attempt, base_delay, max_delay, retry_after(err), rand)
            if on_retry is not None:
                on_retry(err, attempt, delay)
            sleep(delay)
            attempt += 1


def backoff_delay(
    attempt: int, base_delay: float, max_delay: float, server_says: float | None, rand: Callable[[], float]
) -> float:
    """Full jitter below ``base_delay * 2**attempt`` (capped), but at least the server's Retry-After."""
    delay = rand() * min(max_delay, base_delay * 2**attempt)
    return max(delay, min(server_says or 0.0, max_delay))


def map_bounded(
    fn: Callable[[T], R],
    items: Iterable[T],
    max_workers: int = 16,
    on_done: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``fn`` over ``items`` with at most ``max_workers`` in flight; results in input order."""
    todo: Sequence[T] = list(items)
    results: list[Any] = [None] * len(todo)
    if not todo:
        return []
    cancel = threading.Event()

    def serve(item: T) -> R:
        if cancel.is_set():
            raise Cancelled
        _worker.cancel = cancel
        try:
            return fn(item)
        finally:
            _worker.cancel = None

    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo))))
    try:
        futures: dict[Future[R], int] = {pool.submit(serve, item): i for i, item in enumerate(todo)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                err = future.exception()
                if err is not None:
                    raise err
                index = futures[future]
                results[index] = future.result()
                if on_done is not None:
                    on_done(index, results[index])
    except BaseException:
        # A failure, Ctrl-C or SIGTERM: nothing new starts, back-off sleeps end now, and the
        # caller does not wait for requests still in flight (they end with their timeout).
        cancel.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
