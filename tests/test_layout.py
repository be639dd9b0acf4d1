"""Activations stay in the layout of the convolutions that read them (no per-call copies)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_fixtures import tiny_config, tiny_kp_checkpoint

from kptoolkit.experiment.build import build_models
from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.nn.layout import in_layout_of, memory_format_of
from kptoolkit.nn.video_kernels import to_memory_format

CL = torch.channels_last


def test_in_layout_of_follows_the_kernel_and_keeps_the_values():
    x = torch.rand(2, 6, 8, 8)
    kernel = torch.rand(4, 6, 3, 3)
    assert in_layout_of(x, kernel) is x  # contiguous kernel: nothing to do
    moved = in_layout_of(x, kernel.contiguous(memory_format=CL))
    assert moved.is_contiguous(memory_format=CL) and not moved.is_contiguous()
    assert torch.equal(moved, x)
    # a one-channel 1x1 kernel is both layouts at once: not a channels_last kernel
    assert memory_format_of(torch.rand(3, 1, 1, 1).contiguous(memory_format=CL)) == (
        torch.contiguous_format
    )


@pytest.mark.parametrize(
    ("masker", "generator"), [("", "fomm"), ("heatmap_sum", "two_stage"), ("", "x2face")]
)
def test_every_convolution_reads_its_kernels_layout_in_channels_last_training(
    tmp_path, masker, generator
):
    """In a bfloat16 channels_last training step no convolution is handed a tensor in the other
    layout (FOMM's warped features and the hourglasses' contiguous inputs were: each such
    convolution then copied its input in the forward and again in the backward pass)."""
    config = tiny_config(f"generator.name={generator}", f"masker.name={masker}")
    models = build_models(plan_experiment(config, str(tiny_kp_checkpoint(tmp_path))))
    for module in models.modules().values():
        to_memory_format(module, CL)
    models.train(True)
    mismatched: list[str] = []

    def check(label: str):
        def hook(module: nn.Conv2d, args: tuple[torch.Tensor, ...]) -> None:
            wanted = memory_format_of(module.weight)
            if not args[0].is_contiguous(memory_format=wanted):
                mismatched.append(f"{label} {tuple(args[0].shape)}")

        return hook

    for label, module in models.generator.named_modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_pre_hook(check(label))
    torch.manual_seed(0)
    source, driving = (torch.rand(2, 3, 64, 64).contiguous(memory_format=CL) for _ in range(2))
    with torch.autocast("cpu", torch.bfloat16):
        outputs = models.generator(source, models.masker(source), models.masker(driving))
    sum(o.float().mean() for o in outputs.values() if o.requires_grad).backward()
    assert mismatched == []
