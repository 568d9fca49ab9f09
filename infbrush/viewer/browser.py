"""Headless Chromium driven over the DevTools protocol (``--remote-debugging-pipe``; no extra Python package).

Used for the viewer's preview (a screenshot after zooming in, embedded in the report) and by the tests:
open a page from disk, collect what it logs (console errors, uncaught exceptions, failed loads), turn the mouse
wheel over an element like a user, wait until OpenSeadragon has loaded every tile it wants, take a screenshot.
The protocol over a pipe: JSON messages terminated by a NUL byte, the browser reading fd 3 and writing fd 4.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from infbrush.errors import InfbrushError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class BrowserError(InfbrushError):
    """Chromium is missing, did not start, or the page did not get ready in time."""


def find_chromium(path: str | None = None) -> str | None:
    """The Chromium executable: ``path``, ``$INFBRUSH_CHROMIUM``, or the first of CANDIDATES on PATH."""
    for name in (path, os.environ.get("INFBRUSH_CHROMIUM"), *CANDIDATES):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _high_fd(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` numbered ≥ 10 (mapping the browser's ends onto 3 and 4 cannot
    then overwrite one with the other)."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Chromium:
    """A headless Chromium process with one page; use as a context manager."""

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900,
                 timeout: float = 60.0) -> None:
        exe = find_chromium(executable)
        if exe is None:
            raise BrowserError("Chromium not found (Debian: apt-get install chromium; or set INFBRUSH_CHROMIUM)")
        self.timeout = timeout
        self.width, self.height = width, height
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.mkdtemp(prefix="infbrush-chromium-")
        browser_in, self._to_browser = (_high_fd(fd) for fd in os.pipe())
        self._from_browser, browser_out = (_high_fd(fd) for fd in os.pipe())
        args = [exe, "--headless=new", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--mute-audio", "--password-store=basic", f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._log = open(Path(self._profile) / "chromium.log", "w+b")  # noqa: SIM115 - closed in close()
        def map_pipes() -> None:  # in the child: the protocol's fds; dup2 leaves them open across exec
            os.dup2(browser_in, 3)
            os.dup2(browser_out, 4)

        try:
            # close_fds=False: Python's own descriptors are close-on-exec anyway; 3 and 4 must survive exec
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                         preexec_fn=map_pipes, close_fds=False)
        finally:
            os.close(browser_in)
            os.close(browser_out)
        self.session: str | None = None

    # -- protocol
    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            os.write(self._to_browser, data)
        except (BrokenPipeError, OSError):
            raise BrowserError(f"Chromium exited ({self._log_tail()})") from None
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited ({self._log_tail()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, *, session: bool = True,
             timeout: float | None = None) -> dict[str, Any]:
        """Send a command (to the page's session unless ``session=False``) and return its result."""
        wanted = self._send(method, params, self.session if session else None)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message', message['error'])}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                message = self._read(deadline)
                if "method" in message:
                    self.events.append(message)
        except BrowserError as err:
            if "timed out" not in str(err):
                raise

    # -- page
    def open(self, url: str) -> None:
        """Create the page, start collecting its logs, load ``url`` and wait for its load event."""
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            message = self._read(deadline)
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}: {result['exceptionDetails'].get('text', 'exception')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, settle: int = 3) -> None:
        """Wait until ``expression`` is true ``settle`` polls in a row (100 ms apart)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        streak = 0
        while streak < settle:
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for: {expression}")
            streak = streak + 1 if self.evaluate(expression) else 0
            self.pump(0.1)

    def wheel(self, x: float, y: float, delta_y: float, times: int = 1, pause: float = 0.15) -> None:
        """Turn the mouse wheel over (x, y), as a user does (negative delta_y zooms in)."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for _ in range(times):
            self.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0,
                                                   "deltaY": delta_y})
            self.pump(pause)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def problems(self) -> list[str]:
        """What the page reported as errors: console.error/assert, uncaught exceptions, failed loads."""
        lines = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                lines.append("console." + params["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                lines.append("exception: " + str(details.get("exception", {}).get("description", details.get("text"))))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                lines.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        return lines

    def console(self) -> list[str]:
        """Every console message and log entry, as 'level: text'."""
        lines = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                lines.append(f"{params.get('type')}: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded":
                lines.append(f"{params['entry'].get('level')}: {params['entry'].get('text')}")
        return lines

    # -- life cycle
    def _log_tail(self) -> str:
        try:
            self._log.flush()
            self._log.seek(0)
            text = self._log.read().decode(errors="replace").strip().splitlines()
            return text[-1][:300] if text else "no output"
        except (OSError, ValueError):
            return "no output"

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close")
                    self.proc.wait(timeout=5)
                except (BrowserError, subprocess.TimeoutExpired):
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


READY = "!!(window.infbrushViewer && window.infbrushViewer.ready())"


def capture_viewer(index_html: str | os.PathLike, *, zoom_steps: int = 10, executable: str | None = None,
                   width: int = 1280, height: int = 900, timeout: float = 60.0) -> dict[str, Any]:
    """Open the viewer from disk, zoom into the first generated image with the mouse wheel, screenshot.

    Returns {png (bytes, zoomed in), png_home (bytes, before zooming), before, after
    (window.infbrushViewer.state() per viewer), links (synchronised pairs: viewer indices and box), rects
    (left, top, width, height, kind of each viewer on the page), problems (errors the page logged), console (all
    messages), seconds, url}.
    """
    start = time.monotonic()
    url = Path(index_html).resolve().as_uri()
    with Chromium(executable, width=width, height=height, timeout=timeout) as browser:
        browser.open(url)
        browser.wait_for(READY)
        before = browser.evaluate("window.infbrushViewer.state()")
        rects = browser.evaluate("Array.from(document.querySelectorAll('.osd')).map(e => { const r = "
                                 "e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height, "
                                 "e.getAttribute('data-kind')]; })")
        png_home = browser.screenshot()
        if not rects:
            raise BrowserError(f"{index_html}: the page shows no viewer")
        left, top, w, h, _ = rects[0]
        browser.wheel(left + w / 2, top + h / 2, -120, times=zoom_steps)
        browser.wait_for(READY)
        after = browser.evaluate("window.infbrushViewer.state()")
        links = browser.evaluate("window.infbrushViewer.links")
        png = browser.screenshot()
        return {"png": png, "png_home": png_home, "before": before, "after": after, "links": links, "rects": rects,
                "problems": browser.problems(), "console": browser.console(), "seconds": time.monotonic() - start,
                "url": url}
