"""Fixtures of the engine tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def cli():
    """``failscope.cli.main`` in this process; the failscope log level it sets is restored."""
    from failscope.cli import main

    logger = logging.getLogger("failscope")
    level = logger.level
    try:
        yield main
    finally:
        logger.setLevel(level)
