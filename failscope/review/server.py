"""The ``failscope review`` web app: annotate a run's slices in the browser.

A Starlette app on uvicorn, bound to 127.0.0.1 by default. Every request must carry
the random token printed in the URL (``?token=...``, or the ``X-Failscope-Token``
header the page sends): without it the answer is 403 and nothing is read or written,
so no other page in the browser, and no other user of the machine, can read or
change annotations. Saves go through :func:`~failscope.review.annotations.save_annotation`
(run lock, atomic write, compare-and-swap on the file's version).

Routes (all need the token):

``GET /``
    The page: every slice ranked by severity, with captions, caption checks,
    metrics, an image mosaic (and the attribution mosaic ``RUN/plots/mosaic-<id>.png``
    when one exists) and the annotation controls.
``GET /api/state``
    ``{"version", "annotations": {slice_id: annotation}, "suggestions": {...}}``.
``GET /api/mosaic/{slice_id}``
    ``{"thumbs": [{"uri", "correct", "pred"}], "attribution": uri or null}``.
``POST /api/annotations`` (JSON)
    ``{"slice_id", "label" (or null to clear), "note", "version", "expect"}``: 200 with
    the new state; 409 with the latest state when the save is stale; 400 with
    ``{"error"}`` for bad input.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import socket
import threading
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import InputError, check_int, fail
from failscope.report._images import attribution_mosaic_path
from failscope.run import Run
from failscope.run.schema import ANNOTATION_LABELS, SliceEntry

from .annotations import VersionConflict, read_annotations, save_annotation
from .suggest import moved_label_suggestions, slice_vectors, suggest_labels

logger = logging.getLogger(__name__)

__all__ = ["LOCAL_HOSTS", "ReviewServer", "slice_payload"]

#: Hosts that are only reachable from this machine (no warning when binding to them).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Thumbnails per slice mosaic.
MOSAIC_THUMBS = 12
#: Largest request body accepted (bytes).
MAX_BODY = 65536
TOKEN_HEADER = "x-failscope-token"


def _rate(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def slice_payload(run: Run, entry: SliceEntry) -> dict[str, Any]:
    """What the page shows of one slice (no images: those come from ``/api/mosaic``)."""
    caps = entry.captions
    return {
        "id": entry.id,
        "class_name": entry.class_name,
        "class_index": entry.class_index,
        "rank": entry.rank,
        "status": entry.status,
        "slicer": entry.slicer,
        "size": entry.size,
        "errors": entry.n_errors_in,
        "error_rate_in": _rate(entry.error_rate_in),
        "error_rate_out": _rate(entry.error_rate_out),
        "p_value": entry.support.p_value,
        "cv_score": entry.support.cv_score,
        "confusion": sorted(entry.confusion.items(), key=lambda kv: -kv[1])[:3],
        "failure": [c.text for c in caps.failure[:5]] if caps else [],
        "success": [c.text for c in caps.success[:3]] if caps else [],
        "checks": [
            {
                "text": c.text,
                "acc": _rate(c.acc_at_decision),
                "class_acc": _rate(c.class_acc),
                "k": c.k_decision,
                "p_value": c.p_value,
                "confirmed": c.confirmed,
            }
            for c in entry.caption_checks or ()
        ],
        "has_attribution": (run.path / attribution_mosaic_path(entry.id)).is_file(),
    }


def _ranked(run: Run) -> list[SliceEntry]:
    """Slices by severity: supported slices first, then most errors inside."""
    return sorted(run.slices, key=lambda s: (s.status == "weak", -s.n_errors_in, s.id))


def _html_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class ReviewServer:
    """The review app for one run, served by uvicorn on ``host:port``.

    Parameters
    ----------
    run : Run
    host : str, default="127.0.0.1"
    port : int, default=0
        0 picks a free port.
    token : str, optional
        Default: 32 random URL-safe characters.
    """

    run: Run
    host: str = "127.0.0.1"
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _server: Any = field(default=None, repr=False)
    _sock: socket.socket | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _mosaics: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_int(self.port, name="port", low=0, high=65535)
        if not self.run.slices:
            raise fail(f"{self.run.path} has no slices to review (every class was skipped)")
        read_annotations(self.run)  # a bad annotations.json stops here, in one line
        if self.host not in LOCAL_HOSTS:
            logger.warning(
                "binding to %s: anyone who can reach this machine on that address and has "
                "the URL (with its token) can read and change the annotations",
                self.host,
            )

    # -- serving
    def bind(self) -> str:
        """Bind and listen (a free port when ``port`` is 0); return the page's URL."""
        if self._sock is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise fail(
                    f"cannot listen on {self.host}:{self.port} ({exc.strerror}); pick "
                    "another --port (0: any free port)"
                ) from None
            sock.listen(64)
            self.port = sock.getsockname()[1]
            self._sock = sock
        return self.url

    @property
    def url(self) -> str:
        """``http://HOST:PORT/?token=...``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def _uvicorn(self) -> Any:
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", ws="none"
        )
        self._server = uvicorn.Server(config)
        return self._server

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl+C)."""
        self.bind()
        self._uvicorn().run(sockets=[self._sock])

    def start(self) -> str:
        """Serve from a background thread (tests, notebooks); return the URL once up."""
        import time

        self.bind()
        server = self._uvicorn()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the review server did not start")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- content
    @cached_property
    def _vectors(self) -> dict[str, np.ndarray]:
        return slice_vectors(self.run)

    @cached_property
    def _moved(self) -> dict[str, Any]:
        return moved_label_suggestions(self.run)

    def state(self) -> dict[str, Any]:
        """The annotations and the current suggestions (a slice whose training labels
        moved is suggested noisy, whatever its neighbours say)."""
        ann = read_annotations(self.run)
        done = {a.slice_id for a in ann.annotations}
        sugg = suggest_labels(self._vectors, ann)
        sugg.update({sid: s for sid, s in self._moved.items() if sid not in done})
        return {
            "version": ann.version,
            "annotations": {a.slice_id: a.to_json() for a in ann.annotations},
            "suggestions": {sid: asdict(s) for sid, s in sugg.items()},
        }

    @cached_property
    def _image_paths(self) -> Any:
        from failscope.data.datasets import load_dataset_from_spec

        return load_dataset_from_spec(self.run.info.data).abspaths

    def mosaic(self, slice_id: str) -> dict[str, Any]:
        """Thumbnails of the slice's most inside members (held-out split if any)."""
        if slice_id in self._mosaics:
            return self._mosaics[slice_id]
        from failscope.report._images import data_uri, thumbnail_uri

        entry = self.run.slice(slice_id)
        ex = self.run.examples
        split = ex["split"].to_numpy().astype(str)
        view = "test" if (split == "test").any() else self.run.fit_split
        scores = np.asarray(self.run.slice_score_matrix()[:, entry.column], dtype=np.float64)
        rows = np.flatnonzero(self.run.members(entry) & (split == view))
        rows = rows[np.argsort(-scores[rows], kind="stable")][:MOSAIC_THUMBS]
        thumbs = []
        names = self.run.class_names
        for r in rows:
            path = Path(str(self._image_paths[int(ex["id"].iat[r])]))
            thumbs.append(
                {
                    "uri": thumbnail_uri(path, size=72),
                    "correct": bool(ex["correct"].iat[r]),
                    "pred": names[int(ex["pred"].iat[r])],
                }
            )
        attribution = None
        p = self.run.path / attribution_mosaic_path(slice_id)
        if p.is_file():
            attribution = data_uri(p.read_bytes(), "image/png")
        out = {"split": view, "thumbs": thumbs, "attribution": attribution}
        self._mosaics[slice_id] = out
        return out

    def page(self, nonce: str) -> str:
        """The HTML page, with the run's slices embedded as JSON."""
        files = resources.files("failscope.review")
        html = files.joinpath("page.html").read_text(encoding="utf-8")
        data = {
            "run": str(self.run.path),
            "labels": list(ANNOTATION_LABELS),
            "slices": [slice_payload(self.run, s) for s in _ranked(self.run)],
        }
        return (
            html.replace("{{nonce}}", nonce)
            .replace("{{css}}", files.joinpath("review.css").read_text(encoding="utf-8"))
            .replace("{{js}}", files.joinpath("review.js").read_text(encoding="utf-8"))
            .replace("{{data}}", _html_json(data))
        )

    # -- the ASGI app
    @cached_property
    def app(self) -> Any:
        """The Starlette app, wrapped in the token check."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        routes = [
            Route("/", self._page, methods=["GET"]),
            Route("/api/state", self._state, methods=["GET"]),
            Route("/api/mosaic/{slice_id:path}", self._mosaic, methods=["GET"]),
            Route("/api/annotations", self._save, methods=["POST"]),
        ]
        return _TokenGate(Starlette(routes=routes), self.token)

    async def _page(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse

        nonce = secrets.token_urlsafe(16)
        html = await run_in_threadpool(self.page, nonce)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": csp})

    async def _state(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        return await _json_call(run_in_threadpool(self.state))

    async def _mosaic(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        return await _json_call(run_in_threadpool(self.mosaic, request.path_params["slice_id"]))

    async def _save(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, 413)
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return JSONResponse({"error": "the body is not a JSON object"}, 400)

        def save() -> dict[str, Any]:
            version = data.get("version")
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                raise fail(f"version must be an integer, got {version!r}")
            slice_id = data.get("slice_id")
            if not isinstance(slice_id, str):
                raise fail(f"slice_id must be a string, got {slice_id!r}")
            save_annotation(
                self.run, slice_id, data.get("label"), note=data.get("note"),
                version=version, expect=data.get("expect") if "expect" in data else False,
            )  # fmt: skip
            return self.state()

        try:
            return JSONResponse(await run_in_threadpool(save))
        except VersionConflict as exc:
            state = await run_in_threadpool(self.state)
            return JSONResponse({"error": str(exc), "state": state}, 409)
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, 400)


async def _json_call(awaitable: Any) -> Any:
    from starlette.responses import JSONResponse

    try:
        return JSONResponse(await awaitable)
    except InputError as exc:
        return JSONResponse({"error": str(exc)}, 400)


class _TokenGate:
    """ASGI wrapper: 403 for any HTTP request without the token; no-store, no referrer."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _allowed(self, scope: dict[str, Any]) -> bool:
        from urllib.parse import parse_qs

        given = [v for k, v in scope.get("headers", []) if k == TOKEN_HEADER.encode()]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given += [v.encode() for v in query.get("token", [])]
        return any(hmac.compare_digest(g, self._token) for g in given)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not self._allowed(scope):
            from starlette.responses import PlainTextResponse

            response = PlainTextResponse("403: the URL's token is missing or wrong", 403)
            await response(scope, receive, send)
            return

        async def send_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, send_headers)
