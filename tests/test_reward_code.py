"""The ``code`` reward: unit tests run against a response in a limited subprocess. A response that
loops forever, forks, writes outside its directory, opens a socket or eats memory is stopped by
its limits, and scores the tests it passed before that."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from p2o_cli.reward.code import code_reward, expected_outputs, extract_code, namespace_prefix, problem_tests, run_tests

ADD = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]


def score(code: str, tests: list[str] = TESTS, timeout: float = 2.0) -> float:
    return run_tests(code, tests, timeout=timeout, memory_mb=256)


def test_share_of_tests_passed() -> None:
    assert score(ADD) == 1.0
    assert score("def add(a, b):\n    return a - b\n") == pytest.approx(1 / 3)  # only add(0, 0) passes
    assert score("def add(a, b) return") == 0.0  # does not compile
    assert score(ADD + "import sys\nsys.exit(0)\n") == 0.0  # ends before the tests run


def test_response_code_and_tests_from_the_problem() -> None:
    response = "Here:\n```python\nprint('draft')\n```\nBetter:\n```python\n" + ADD + "```\nDone."
    assert extract_code(response) == ADD
    assert extract_code(ADD) == ADD  # no fence: the whole response
    assert problem_tests({"tests": TESTS}) == TESTS and problem_tests({"tests": "assert True"}) == ["assert True"]
    assert problem_tests({}) is None and problem_tests({"tests": []}) is None
    problems = [{"answer": ADD, "tests": TESTS}, {"answer": ADD}]
    assert code_reward([f"```python\n{ADD}```", ADD], problems, timeout=2.0, memory_mb=256) == [1.0, None]


@pytest.mark.timeout(60)
def test_an_endless_loop_keeps_the_tests_passed_before_it() -> None:
    tests = [*TESTS[:2], "while True:\n    pass", TESTS[2]]
    assert score(ADD, tests, timeout=1.0) == 0.5
    assert score(ADD + "import time\ntime.sleep(600)\n", timeout=1.0) == 0.0


@pytest.mark.timeout(60)
def test_processes_are_refused() -> None:
    for spawn in ("import os\nos.fork()", "import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')",
                  "import multiprocessing\nmultiprocessing.Process(target=print).start()"):
        assert score(ADD + spawn + "\n") == 0.0, spawn
    assert score(ADD, [*TESTS, "import os\nassert os.fork() >= 0"]) == 0.75


@pytest.mark.timeout(60)
def test_writes_stay_in_the_fresh_directory(tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    assert score(ADD + f"open({str(outside)!r}, 'w').write('x')\n") == 0.0
    assert score(ADD + "open('../escape.txt', 'w').write('x')\n") == 0.0
    assert score(ADD + f"import os\nos.remove({str(outside)!r})\n") == 0.0
    assert not outside.exists()
    # Inside its own directory a response may write what it likes, and starts with nothing there.
    fresh = ["import os\nassert sorted(os.listdir('.')) == ['output.txt']", "open('notes.txt', 'w').write('ok')",
             "assert open('notes.txt').read() == 'ok'"]
    assert score(ADD, fresh) == 1.0
    assert score(ADD, [*fresh[:1]]) == 1.0  # the next response gets a directory of its own


@pytest.mark.timeout(60)
def test_the_environment_is_stripped(monkeypatch) -> None:
    monkeypatch.setenv("P2O_TEST_SECRET", "hunter2")
    tests = ["import os\nassert 'P2O_TEST_SECRET' not in os.environ",
             "import os\nassert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_CTYPE'}"]
    assert score(ADD, tests) == 1.0


@pytest.fixture()
def listener():
    """A real TCP server on this machine's loopback, counting the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@pytest.mark.timeout(60)
def test_sockets_are_refused(listener) -> None:
    port, accepted = listener
    connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
    assert score(ADD + connect) == 0.0
    assert score(ADD, [*TESTS, connect]) == 0.75
    assert accepted == []


@pytest.mark.timeout(60)
def test_the_network_namespace_is_empty(listener) -> None:
    """Below the audit hook: a process started the way each response is cannot reach the host's loopback."""
    prefix = namespace_prefix()
    if not prefix:
        pytest.skip("no network namespace on this platform (unshare missing or not permitted)")
    port, accepted = listener
    probe = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0
    before = len(accepted)
    result = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True)
    assert result.returncode != 0 and b"Network is unreachable" in result.stderr
    assert len(accepted) == before


@pytest.mark.timeout(60)
def test_memory_is_limited() -> None:
    assert score(ADD + "hoard = bytearray(1 << 30)\n") == 0.0
    assert score(ADD, [*TESTS, "hoard = [bytearray(32 << 20) for _ in range(64)]"]) == 0.75


@pytest.mark.timeout(60)
def test_output_is_bounded_and_cannot_forge_results() -> None:
    flood = "import sys\nfor _ in range(10**6):\n    sys.stdout.write('x' * 4096)\n"
    assert score(ADD, [*TESTS, flood]) == 0.75  # the write past 16 MB fails the test, nothing worse
    forged = "print('0 0 1')\nprint('done')\n"
    assert score("", [forged]) == 1.0  # the test itself passes (it raises nothing)...
    assert score("", ["assert False\n" + forged]) == 0.0  # ...but printing cannot pass a failed one


def test_expected_outputs() -> None:
    tests = ["assert f(2) == 5", "assert 'x' == g()", "assert h([1, 2]) == [2, 1]", "assert ok() == True",
             "assert f(None) is None", "not python ("]
    assert expected_outputs(tests) == ["5", "x", "[2, 1]"]


def test_the_sandbox_runs_as_its_own_script() -> None:
    harness = Path(__file__).resolve().parents[1] / "src" / "p2o_cli" / "reward" / "sandbox.py"
    source = harness.read_text()
    assert "import p2o_cli" not in source and "from p2o_cli" not in source and "from ." not in source
    assert os.access(harness, os.R_OK)
