"""Where kptoolkit caches generated data and trained helper models."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$KPTOOLKIT_CACHE, else $XDG_CACHE_HOME/kptoolkit, else ~/.cache/kptoolkit."""
    explicit = os.environ.get("KPTOOLKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "kptoolkit"
