"""Drive headless Chromium over the DevTools protocol, with no dependency but the stdlib.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol messages
(JSON, each ended by a NUL byte) from file descriptor 3 and writes replies and
events to descriptor 4. No port, no WebSocket, nothing on the network.

    with Chromium.launch() as browser:
        page = browser.open("file:///tmp/report.html")
        page.evaluate("document.title")
        page.screenshot()      # PNG bytes
        page.errors            # console errors, exceptions, failed loads, CSP violations
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None (``CHROMIUM`` env var wins)."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if os.path.isfile(env) else shutil.which(env)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class ProtocolError(RuntimeError):
    """A DevTools command failed or timed out."""


@dataclass
class Page:
    browser: Chromium
    session: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page and return its JSON value."""
        res = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in res:
            raise ProtocolError(f"JS error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, *, full_page: bool = False) -> bytes:
        """PNG bytes of the viewport (or the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            w, h = self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": min(h, 16000), "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP, failed loads)."""
        self.browser.drain()
        out = []
        for ev in self.events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(
                    f"exception: {d.get('text')} {d.get('exception', {}).get('description')}"
                )
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = [a.get("value", a.get("description")) for a in p.get("args", [])]
                out.append(f"console.{p['type']}: {args}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append(f"log[{e.get('source')}]: {e.get('text')} {e.get('url', '')}")
        return out


class Chromium:
    """A headless Chromium process driven through ``--remote-debugging-pipe``."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int, tmp: str):
        self.proc = proc
        self._out = os.fdopen(to_browser, "wb", buffering=0)
        self._in = from_browser
        self._tmp = tmp
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pages: dict[str, Page] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def launch(
        cls, executable: str | None = None, *, width: int = 1280, height: int = 900
    ) -> Chromium:
        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no Chromium executable found (set CHROMIUM=/path)")
        tmp = tempfile.mkdtemp(prefix="failscope-chromium-")
        # our ends: write commands to c_in_w, read replies from c_out_r
        c_in_r, c_in_w = os.pipe()
        c_out_r, c_out_w = os.pipe()
        # move Chromium's ends above 10 so that dup2 onto 3 and 4 cannot clobber them
        hi_r = fcntl.fcntl(c_in_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(c_out_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def child_fds() -> None:  # runs in the child, before exec
            os.dup2(hi_r, 3)  # dup2 makes 3 and 4 inheritable; every other fd is CLOEXEC
            os.dup2(hi_w, 4)

        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            f"--window-size={width},{height}",
            f"--user-data-dir={tmp}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            close_fds=False,  # keep 3 and 4; Python's own fds are non-inheritable anyway
        )
        for fd in (c_in_r, c_out_w, hi_r, hi_w):
            os.close(fd)
        return cls(proc, c_in_w, c_out_r, tmp)

    # -- plumbing
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._queue.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._queue.put(json.loads(msg))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            self._replies[msg["id"]] = msg
            return
        page = self._pages.get(msg.get("sessionId", ""))
        if page is not None:
            page.events.append(msg)

    def drain(self) -> None:
        while True:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                return
            if msg is not None:
                self._dispatch(msg)

    def _pump(self, deadline: float) -> None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise ProtocolError("timed out waiting for Chromium")
        try:
            msg = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise ProtocolError("timed out waiting for Chromium") from None
        if msg is None:
            raise ProtocolError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
        self._dispatch(msg)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while self._next not in self._replies:
            self._pump(deadline)
        reply = self._replies.pop(self._next)
        if "error" in reply:
            raise ProtocolError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, page: Page, method: str, *, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for ev in page.events[seen:]:
                if ev["method"] == method:
                    return ev
            seen = len(page.events)
            self._pump(deadline)

    # -- API
    def open(
        self, url: str, *, width: int = 1280, height: int = 900, timeout: float = 30.0
    ) -> Page:
        """Open ``url`` in a new tab and wait for its load event."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        self._pages[session] = page
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            page.send(method)
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.send("Page.navigate", {"url": url})
        self.wait_event(page, "Page.loadEventFired", timeout=timeout)
        return page

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except (ProtocolError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        finally:
            for closer in (self._out.close, lambda: os.close(self._in)):
                try:
                    closer()
                except OSError:
                    pass
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
