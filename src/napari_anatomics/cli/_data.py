"""Subcommands (filled in by the module's owner)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``sub``."""
