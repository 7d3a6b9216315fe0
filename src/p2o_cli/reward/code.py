"""The ``code`` reward: a Python response run against its problem's unit tests, in a subprocess.

A code problem carries ``tests``: a list of Python snippets (usually ``assert`` lines), or one
snippet. The response's code (its last fenced code block, else the whole response) runs first,
then each test in the code's namespace; the reward is the share of tests that pass.

Each response runs in :mod:`.sandbox` as its own process: a fresh temporary directory, an
environment stripped to ``PATH``/``HOME``/``TMPDIR``/``LANG``, limits on wall-clock and CPU time,
memory and file size, an audit hook that refuses sockets, subprocesses and writes outside the
directory, and, where the platform allows (root, or unprivileged user namespaces), an empty
network namespace and a PID namespace whose processes all end with it. This isolates honest
mistakes; it is not a security boundary (see docs/rewards.md).
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .registry import register_reward

HARNESS = str(Path(__file__).with_name("sandbox.py"))
FILE_MB = 16  # the most a response may write to one file
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
# Namespace flags tried in order: as root, then as an unprivileged user with a user namespace.
_NAMESPACES = (
    ("--net", "--pid", "--fork", "--kill-child"),
    ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"),
)


def extract_code(response: str) -> str:
    """The last fenced code block of a response (```python … ```), or the whole response."""
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


def problem_tests(problem: Mapping[str, Any]) -> list[str] | None:
    """The problem's ``tests`` as a list of snippets; None if it has none."""
    tests = problem.get("tests")
    if isinstance(tests, str):
        return [tests] if tests.strip() else None
    if isinstance(tests, (list, tuple)) and tests and all(isinstance(t, str) for t in tests):
        return list(tests)
    return None


@functools.cache
def namespace_prefix() -> tuple[str, ...]:
    """``unshare …`` to give each run an empty network namespace and its own PID namespace, or ()
    where this platform allows neither (then the audit hook alone keeps sockets closed)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for flags in _NAMESPACES:
        try:
            probe = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return (unshare, *flags)
    return ()


def run_tests(code: str, tests: Sequence[str], *, timeout: float = 10.0, memory_mb: int = 512) -> float:
    """The share of ``tests`` that pass after ``code``, run in the sandbox within the limits."""
    nonce = secrets.token_hex(8)
    wall = max(1, math.ceil(timeout))
    request = {"nonce": nonce, "code": code, "tests": list(tests), "cpu_s": wall, "memory_mb": memory_mb,
               "file_mb": FILE_MB, "wall_s": wall}
    with tempfile.TemporaryDirectory(prefix="p2o-code-", ignore_cleanup_errors=True) as work:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
        command = [*namespace_prefix(), sys.executable, "-I", "-B", HARNESS]
        proc = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(json.dumps(request).encode(), timeout=timeout + 1.0)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
        finally:
            _kill_group(proc)  # whatever the code left running in its process group goes with it
    passed = {line.split()[1] for line in out.decode(errors="replace").splitlines()
              if line.startswith(nonce) and line.endswith(" 1")}
    return len(passed) / len(tests)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@register_reward("code")
def code_reward(responses: Sequence[str], problems: Sequence[Mapping[str, Any]], *, timeout: float = 10.0,
                memory_mb: int = 512) -> list[float | None]:
    """The share of each problem's ``tests`` the response's code passes; None without tests."""
    out: list[float | None] = []
    for response, problem in zip(responses, problems):
        tests = problem_tests(problem)
        out.append(None if tests is None else run_tests(extract_code(response), tests, timeout=timeout,
                                                        memory_mb=memory_mb))
    return out


def expected_outputs(tests: Sequence[str]) -> list[str]:
    """The literal values the tests compare with (``assert f(2) == 5`` -> ``5``): what a template
    must not state. Booleans and None are left out: "return True when…" gives nothing away."""
    found: list[str] = []
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq) for op in node.ops)):
                continue
            for side in (node.left, *node.comparators):
                try:
                    value = ast.literal_eval(side)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue
                if value is not None and not isinstance(value, bool):
                    found.append(value if isinstance(value, str) else repr(value))
    return found


def _code_leaks(problem: Mapping[str, Any], **options: Any) -> list[str]:
    return [str(problem["answer"]), *expected_outputs(problem_tests(problem) or [])]


code_reward.leaks = _code_leaks  # type: ignore[attr-defined]
