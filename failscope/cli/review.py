"""``failscope review RUN``: annotate slices in the browser (or with ``--set``)."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  failscope review runs/demo                      # prints http://127.0.0.1:PORT/?token=...
  failscope review runs/demo --port 8765
  failscope review runs/demo --set 8/0=core --set 3/0=noisy --note "labelled by CI"

Open the printed URL (its token is required on every request). Annotations are saved
at once to RUN/annotations.json; `failscope retrain` and `failscope report` read them.
Labels: core, spurious, noisy, not-a-failure.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "review",
        help="annotate slices (core / spurious / noisy / not a failure) in the browser",
        description=(
            "Serve a local page that shows every slice ranked by severity with its "
            "captions, caption checks, mosaics and metrics, and records a verdict per "
            "slice (core, spurious, noisy labels, not a failure) and a note in "
            "RUN/annotations.json. The URL printed on stdout carries a random token that "
            "every request needs. With --set, annotate without a server."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable from "
        "other machines, and a warning says so)",
    )
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    p.add_argument(
        "--set",
        action="append",
        metavar="SLICE=LABEL",
        help="annotate SLICE (e.g. 8/0) with LABEL and exit, without a server (repeatable)",
    )
    p.add_argument("--note", default=None, help="note stored with every --set annotation")
    p.add_argument(
        "--clear", action="append", metavar="SLICE", help="remove SLICE's annotation and exit"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from failscope._validation import fail
    from failscope.run import load_run

    run_ = load_run(args.run)
    if args.set or args.clear:
        from failscope.review.annotations import annotate, remove_annotation

        for item in args.set or ():
            sid, eq, label = item.rpartition("=")
            if not eq or not sid:
                raise fail(f"--set {item!r}: write SLICE=LABEL, e.g. --set 8/0=core")
            ann = annotate(run_, sid.strip(), label.strip(), note=args.note)
            print(f"{sid.strip()}: {label.strip()} (annotations.json version {ann.version})")
        for sid in args.clear or ():
            ann = remove_annotation(run_, sid)
            print(f"{sid}: cleared (annotations.json version {ann.version})")
        return 0
    from failscope.review.server import ReviewServer

    server = ReviewServer(run_, host=args.host, port=args.port)
    print(server.bind(), flush=True)
    server.serve_forever()
    return 0
