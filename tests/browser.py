"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
open a page, collect what went wrong (console errors, uncaught exceptions, failed or non-local
requests), evaluate expressions, take screenshots. Standard library only; the browser is
Debian's ``chromium`` package (or ``$P2O_CHROMIUM``).

As a script it writes a page's screenshot::

    python tests/browser.py report.html shot.png [CSS selector of the part to shoot [its top N pixels]]
"""

from __future__ import annotations

import base64
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

LOCAL = ("file:", "data:", "about:", "chrome:", "devtools:")


def find_chromium() -> str | None:
    for name in (os.environ.get("P2O_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


class Browser:
    def __init__(self, executable: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="p2o-chromium-")
        commands_r, self._commands = os.pipe()  # we write, chromium reads on fd 3
        self._replies, replies_w = os.pipe()  # chromium writes on fd 4, we read

        def fds() -> None:
            # Move both ends clear of 3 and 4 before placing them there (one may already be 3 or 4).
            a, b = os.dup(commands_r), os.dup(replies_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=fds,
            pass_fds=(3, 4))
        os.close(commands_r)
        os.close(replies_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.problems: list[str] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    # ------------------------------------------------------------ protocol

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = orjson.loads(raw)
        if "method" in message:
            self._note(message)
        return message

    def _note(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            values = (str(arg.get("value", arg.get("description"))) for arg in params["args"])
            self.problems.append("console: " + " ".join(values))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append("exception: " + details.get("exception", {}).get("description", details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            self.problems.append(f"request failed: {params.get('errorText')}")

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, orjson.dumps(message) + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self._read_message(deadline)

    # ------------------------------------------------------------ what tests use

    def open(self, url: str, timeout: float = 60.0) -> None:
        """Load ``url`` and wait until its load event (scripts have run by then)."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired", timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def non_local_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL)]

    def screenshot(self, path: str | Path, selector: str | None = None, max_height: float | None = None) -> Path:
        """A PNG of the element ``selector`` (its whole height, or its top ``max_height`` pixels),
        or of the visible window."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({orjson.dumps(selector).decode()})"
                                ".getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, "
                                "r.height]; })()")
            height = box[3] if max_height is None else min(box[3], max_height)
            # A few pixels around the element, so a border on its edge is not cut by rounding.
            params.update(clip={"x": box[0] - 4, "y": box[1] - 4, "width": box[2] + 8, "height": height + 8,
                                "scale": 1},
                          captureBeyondViewport=True)
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._commands, self._replies):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    page, shot, *part = sys.argv[1:]
    executable = find_chromium()
    if executable is None:
        sys.exit("no chromium on PATH (apt-get install chromium)")
    with Browser(executable) as browser:
        browser.open(Path(page).resolve().as_uri())
        browser.screenshot(shot, part[0] if part else None, float(part[1]) if len(part) > 1 else None)
        for problem in browser.problems:
            print(problem, file=sys.stderr)
