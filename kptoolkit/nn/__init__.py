"""Shared building blocks of FOMM-family models (blocks, hourglass, anti-alias downscale, grids)."""

from kptoolkit.nn.anti_alias import AntiAliasDownscale, anti_alias_downscale, anti_alias_kernel
from kptoolkit.nn.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, residual_stack
from kptoolkit.nn.grid import make_coordinate_grid
from kptoolkit.nn.hourglass import Hourglass, HourglassDecoder, HourglassEncoder, level_width

__all__ = [
    "AntiAliasDownscale",
    "DownBlock2d",
    "Hourglass",
    "HourglassDecoder",
    "HourglassEncoder",
    "ResBlock2d",
    "SameBlock2d",
    "UpBlock2d",
    "anti_alias_downscale",
    "anti_alias_kernel",
    "level_width",
    "make_coordinate_grid",
    "residual_stack",
]
