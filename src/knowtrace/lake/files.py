"""Small file helpers of the lake's builds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["link_or_copy", "quote_path"]


def link_or_copy(src: Path, dst: Path) -> None:
    """Give ``dst`` the content of ``src``: a hard link (no copy), or a copy where links are refused."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def quote_path(path: Path) -> str:
    """``path`` for a single-quoted SQL string literal."""
    return str(path).replace("'", "''")
