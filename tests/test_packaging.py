"""What ``pip install .`` ships: every package of the source tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def listed_packages() -> set[str]:
    # tomllib is 3.11+: the one list this needs, read by hand.
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.M | re.S)
    assert block is not None, "pyproject.toml lists no packages"
    return set(re.findall(r'"([\w.]+)"', block.group(1)))


def test_every_package_in_the_tree_is_listed_for_setuptools() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(base).parts)
        for base in (ROOT, ROOT / "reactor")
        for top in ("threadcheck", "threadcheck_reactor")
        if (base / top).is_dir()
        for init in (base / top).rglob("__init__.py")
    }
    assert "threadcheck._races" in on_disk
    assert on_disk <= listed_packages(), f"not shipped: {sorted(on_disk - listed_packages())}"
