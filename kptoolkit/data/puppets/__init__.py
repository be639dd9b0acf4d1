"""The built-in synthetic puppets: the figure (`model`), its drawing (`render`), how versions
move and look (`style`), the dataset writer (`writer`) and the per-user cache (`cache`)."""

from kptoolkit.data.puppets.cache import (
    default_root,
    ensure_puppets,
    puppets_cached,
    synthetic_puppets,
)

__all__ = ["default_root", "ensure_puppets", "puppets_cached", "synthetic_puppets"]
