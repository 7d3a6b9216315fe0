"""The process the ``code`` reward runs a response in: ``python -I -B sandbox.py`` in a fresh
temporary directory, the request (code, tests, limits) as JSON on stdin.

Run as a script, it imports nothing of p2o. It first lowers its own limits (CPU seconds,
address space, file size, no core files, an alarm at the wall-clock limit), sends the response's
own output to a file in its directory, and installs an audit hook that refuses sockets, new
processes, and writes outside the directory. Then it runs the code, then each test in the
code's namespace, and reports one line per test on the channel it kept (the original stdout),
each prefixed with the request's nonce so nothing the code prints can pass for a result.

This stops honest mistakes (an endless loop, a memory blow-up, a stray write, a forgotten
network call); Python code that sets out to escape can (ctypes, for one). It is not a security
boundary.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys

_NO_PROCESSES = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
                 "os.kill", "os.killpg", "pty.spawn")
_NO_NETWORK = ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo",
               "socket.gethostbyname", "socket.gethostbyaddr")
# Events whose first argument is a path that must stay inside the working directory.
_PATH_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod", "os.chown",
                "os.truncate", "os.link", "os.symlink", "os.utime", "shutil.copyfile", "shutil.move")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def limit(cpu_s: int, memory_mb: int, file_mb: int, wall_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises instead of killing
    # Handlers, not default actions: as the first process of a PID namespace this process would
    # ignore both signals otherwise.
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.signal(signal.SIGXCPU, _out_of_time)
    signal.alarm(wall_s)


def _out_of_time(signum: int, frame: object) -> None:
    os._exit(124)


def _inside(root: str, path: object) -> bool:
    if isinstance(path, int):  # an open descriptor: already allowed when it was opened
        return True
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        return True
    full = os.path.realpath(os.path.join(root, os.fspath(path)))
    return full == root or full.startswith(root + os.sep)


def _writes(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def guard(root: str) -> None:
    """Refuse sockets, processes and writes outside ``root`` from here on (PermissionError)."""

    def hook(event: str, args: tuple) -> None:
        if event.startswith(_NO_PROCESSES):
            raise PermissionError(f"p2o's code reward runs without new processes ({event})")
        if event in _NO_NETWORK:
            raise PermissionError(f"p2o's code reward runs without network ({event})")
        if event == "open" and _writes(args[1], args[2]) and not _inside(root, args[0]):
            raise PermissionError(f"p2o's code reward writes only inside its directory, not to {args[0]!r}")
        if event in _PATH_EVENTS and not all(_inside(root, a) for a in args[:2] if isinstance(a, (str, bytes))):
            raise PermissionError(f"p2o's code reward changes files only inside its directory ({event})")

    sys.addaudithook(hook)


def _run(source: str, name: str, namespace: dict) -> bool:
    try:
        exec(compile(source, name, "exec"), namespace)  # noqa: S102 - running the code is the point
    except BaseException:  # noqa: BLE001 - SystemExit, MemoryError, RecursionError: all are a failure
        return False
    return True


def main() -> None:
    request = json.loads(sys.stdin.read())
    nonce = request["nonce"]
    report = os.fdopen(os.dup(1), "w", buffering=1)
    limit(request["cpu_s"], request["memory_mb"], request["file_mb"], request["wall_s"])
    sys.dont_write_bytecode = True
    output = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    guard(os.path.realpath(os.getcwd()))
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    loaded = _run(request["code"], "solution.py", namespace)
    for i, test in enumerate(request["tests"]):
        passed = loaded and _run(test, f"test_{i}.py", namespace)
        report.write(f"{nonce} {i} {int(passed)}\n")
    report.write(f"{nonce} done\n")
    report.flush()
    os._exit(0)  # no interpreter shutdown: the code may have left threads or handlers behind


if __name__ == "__main__":
    main()
