"""``failscope caption RUN``: (re-)name a run's failure directions with captions."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  failscope caption runs/audit
  failscope caption runs/audit --vocab general --vocab my_phrases.txt --top-k 3
  failscope caption runs/audit --vocab birds.yaml --synonyms synonyms.yaml
  # a run built from --embeddings: name the CLIP that made them (captions need its text tower)
  failscope caption runs/a --clip ViT-B-32 --clip-pretrained laion2b_s34b_b79k

vocabulary files:
  .txt   one phrase per line; blank lines and lines starting with # are ignored.
         A phrase is placed where it reads: a modifier goes before the class
         ("tiny" -> "a photo of a tiny bird"), a phrase that starts with a
         preposition or a verb ending in -ing/-ed goes after it ("in the snow" ->
         "a photo of a bird in the snow"); a phrase that starts with an article
         ("a red one") is refused. A line with {cls} is a whole caption of its own
         ("a sketch of a {cls}").
  .yaml  families of words with their templates, e.g.
           colour: [red, green]                      # placed as .txt phrases are
           kind:
             words: [sparrow, robin, pigeon]
             templates: ["a photo of a {word}", "a {word} on a branch"]
           place:
             words: [feeder, bird bath]
             templates: ["a photo of a {cls} at a {noun}"]

templates:
  {cls} (or {class}) is the class name (or each --synonyms name), and one word slot
  ({word}, {adj}, {noun}, {value} or {phrase}, all alike) takes each word of the
  family. A template may leave out {cls}: "a photo of a {word}" names a sub-type
  of the class ("a photo of a sparrow" for the class bird). Articles are fixed ("a
  8" -> "an 8"); a caption that only restates the class is dropped.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "caption",
        help="name each slice with ranked text captions",
        description=(
            "Rank candidate captions (templates x vocabulary) along each class's failure "
            "direction, check the top ones on held-out images, and write them to "
            "RUN/slices.json. Re-ranking reuses cached text embeddings and never "
            "re-embeds images."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--vocab",
        action="append",
        metavar="FILE|NAME",
        help=(
            "vocabulary: a .txt file (one phrase per line), a .yaml file of families (see "
            "below), or a registered name ('general', 'world'); repeat to combine. "
            "Default: 'world' on world runs, else 'general'"
        ),
    )
    p.add_argument("--synonyms", metavar="FILE", help="YAML mapping class -> list of other names")
    p.add_argument(
        "--method",
        choices=("centroid", "classifier"),
        default=None,
        help="how captions are scored (default: centroid)",
    )
    p.add_argument("--top-k", type=int, default=5, help="captions kept per class (default 5)")
    p.add_argument(
        "--rerank",
        type=int,
        default=None,
        metavar="N",
        help=(
            "re-order each end's first N proposals by the audited model's accuracy on the "
            "class's validation images nearest each caption (default 5; 0 turns it off)"
        ),
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the caption check (accuracy on the images nearest each caption)",
    )
    g = p.add_argument_group("CLIP (default: the one recorded in RUN/run.json)")
    g.add_argument(
        "--clip",
        metavar="NAME",
        help="registered name (world), open_clip model, open_clip config .json, or "
        "local-dir:FOLDER; needed for a run built from --embeddings",
    )
    g.add_argument(
        "--clip-pretrained",
        metavar="TAG",
        help="open_clip pretrained tag, already in the local cache (default laion2b_s34b_b79k)",
    )
    g.add_argument("--clip-checkpoint", metavar="FILE", help="local CLIP weights file")
    g.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    p.set_defaults(func=run)
    return p


def _clip(args: argparse.Namespace, run_dir: Any) -> Any:
    """The CLIP the user named, or None for the run's own (refused if the run has none)."""
    from failscope._validation import fail

    if args.clip is None:
        if args.clip_pretrained or args.clip_checkpoint:
            raise fail("--clip-pretrained and --clip-checkpoint need --clip NAME")
        if run_dir.info.embeddings.clip is None:
            raise fail(
                f"{run_dir.path}/run.json records no CLIP (the run was built from "
                "--embeddings); pass --clip NAME (with --clip-pretrained TAG or "
                "--clip-checkpoint FILE) naming the CLIP that made the embeddings"
            )
        return None
    from failscope.embed import default_pretrained, load_clip

    tag = default_pretrained(args.clip, args.clip_pretrained, checkpoint=args.clip_checkpoint)
    return load_clip(args.clip, tag, checkpoint=args.clip_checkpoint, device=args.device)


def run(args: argparse.Namespace) -> int:
    from failscope.caption.display import caption_table
    from failscope.caption.pipeline import caption_run
    from failscope.caption.rank import DEFAULT_METHOD, RERANK_TOP
    from failscope.cli._progress import StageBars
    from failscope.cli._tables import results_console
    from failscope.run import load_run

    method = args.method or DEFAULT_METHOD
    run_dir = load_run(args.run)
    clip = _clip(args, run_dir)
    with StageBars() as bars:
        bars.stage("ranking captions")
        slices = caption_run(
            run_dir,
            vocab=args.vocab,
            synonyms=args.synonyms,
            method=method,
            top_k=args.top_k,
            clip=clip,
            checks=not args.no_check,
            rerank=RERANK_TOP if args.rerank is None else args.rerank,
        )
    results_console().print(
        caption_table(slices, top=args.top_k, title=f"Failure captions ({method})")
    )
    return 0
