"""What ``--reactor=threadcheck-asyncio`` runs: the asyncio kind, as ``--reactor=threadcheck``."""

from __future__ import annotations

from threadcheck import _twisted_plugin


def install() -> None:
    _twisted_plugin.install("asyncio")
