"""Mask post-processing, the Structure record and the `frame` masker."""

from __future__ import annotations

import pytest
import torch

from kptoolkit import create_masker
from kptoolkit.maskers.functional import finish_mask, normalize_min_max, pad_mask
from kptoolkit.structure import Structure


def test_min_max_is_per_sample_over_all_pixels_and_channels():
    mask = torch.stack([torch.arange(8.0).view(2, 2, 2), 10 * torch.arange(8.0).view(2, 2, 2) - 3])
    out = normalize_min_max(mask)
    expected = torch.arange(8.0).view(2, 2, 2) / 7
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], expected)


def test_constant_mask_does_not_divide_by_zero():
    out = normalize_min_max(torch.full((1, 1, 4, 4), 3.0))
    assert torch.isfinite(out).all() and out.abs().max() == 0


def test_padding_to_64():
    mask = finish_mask(torch.randn(2, 1, 58, 58))
    assert mask.shape == (2, 1, 64, 64)
    assert mask[:, :, :3].abs().max() == 0 and mask[:, :, :, -3:].abs().max() == 0
    assert pad_mask(torch.ones(1, 1, 2, 2), 1).sum() == 4


def test_structure_record():
    s = Structure(mask=torch.ones(1, 1, 4, 4, requires_grad=True))
    assert s.provided == {"mask"}
    assert not s.detach().mask.requires_grad
    assert s.replace(frame=torch.zeros(1, 3, 4, 4)).provided == {"mask", "frame"}


def test_frame_masker_passes_frames_through():
    masker = create_masker("frame")
    frame = torch.rand(2, 3, 16, 16)
    structure = masker(frame)
    assert structure.frame is frame and structure.provided == {"frame"}
    assert masker.channels == 3
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        masker(torch.rand(2, 16, 16))
