"""What every page shares: the document around a body (CSS and script inline,
the data for the script as JSON that cannot end its own element), escaping."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from threadcheck import __version__


def document(title: str, body: str, data: dict[str, Any]) -> str:
    css = resources.files("threadcheck._view").joinpath("page.css").read_text("utf-8")
    js = resources.files("threadcheck._view").joinpath("page.js").read_text("utf-8")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="threadcheck {__version__}">\n'
        f"<title>{e(title)}</title>\n<style>\n{css}</style></head>\n<body>\n{body}\n"
        f'<script type="application/json" id="tc-data">{payload}</script>\n'
        f"<script>\n{js}</script>\n</body></html>\n"
    )


def e(text: str) -> str:
    """``text`` escaped for an element's content or an attribute's value."""
    return html.escape(text, quote=True)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
