"""Image losses: pyramids, VGG19/LPIPS weights from local files only, SSIM, mask correction."""

from __future__ import annotations

import pytest
import torch

from kptoolkit import create_loss
from kptoolkit.errors import CompatibilityError, ConfigError
from kptoolkit.losses.base import LossInputs
from kptoolkit.structure import Structure
from kptoolkit.utils.checkpoint_io import CheckpointError


def inputs(fake: torch.Tensor, real: torch.Tensor, **extras) -> LossInputs:
    return LossInputs(
        batch={"source": real, "driving": real},
        outputs={"prediction": fake},
        source_structure=Structure(),
        driving_structure=Structure(),
        extras=extras,
    )


def test_l1_pyramid():
    torch.manual_seed(0)
    real, fake = torch.rand(2, 2, 3, 32, 32).unbind(0)
    assert create_loss("l1_pyramid")(inputs(real, real), "prediction") == 0
    single = create_loss("l1_pyramid", scales=[1.0])(inputs(fake, real), "prediction")
    torch.testing.assert_close(single, (fake - real).abs().mean())
    with pytest.raises(ConfigError, match=r"'low_res_prediction'.*its outputs: prediction"):
        create_loss("l1_pyramid")(inputs(fake, real), "low_res_prediction")


def test_perceptual_without_weights_says_what_to_provide():
    with pytest.raises(ConfigError, match=r"local torchvision or timm VGG19 file.*random"):
        create_loss("perceptual_pyramid")


def test_perceptual_with_random_weights():
    torch.manual_seed(0)
    loss = create_loss("perceptual_pyramid", weights="random", scales=[1.0, 0.5])
    real, fake = torch.rand(2, 1, 3, 32, 32).unbind(0)
    assert loss(inputs(real, real), "prediction") == 0
    fake.requires_grad_(True)
    value = loss(inputs(fake, real), "prediction")
    value.backward()
    assert value > 0 and fake.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())
    with pytest.raises(ConfigError, match=r"scales: \[1.0, 0.5\]"):
        create_loss("perceptual_pyramid", weights="random")(inputs(fake, real), "prediction")


@pytest.mark.parametrize("layout", ["torchvision.pth", "timm.safetensors"])
def test_perceptual_loads_vgg19_from_a_local_file(tmp_path, layout):
    from safetensors.torch import save_file
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    path = tmp_path / f"vgg19-{layout}"
    if layout.endswith(".safetensors"):
        state["head.fc.weight"] = torch.zeros(2, 2)  # timm files carry a classifier head too
        save_file(state, str(path))
    else:
        torch.save(state, path)
    loss = create_loss("perceptual_pyramid", weights=str(path))
    torch.testing.assert_close(loss.vgg.slices[4][7].weight, state["features.28.weight"])


def test_bad_weight_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="not found"):
        create_loss("perceptual_pyramid", weights=str(missing))
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CheckpointError, match="is not a VGG19 file"):
        create_loss("perceptual_pyramid", weights=str(wrong))


def test_lpips_backbone_from_a_local_file(tmp_path):
    from torchvision.models import alexnet

    with pytest.raises(ConfigError, match="AlexNet"):
        create_loss("lpips")
    torch.manual_seed(2)
    features = alexnet(weights=None).features
    path = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    loss = create_loss("lpips", weights=str(path))
    torch.testing.assert_close(loss.lpips.net.slice1[0].weight, features[0].weight)
    real, fake = torch.rand(2, 1, 3, 64, 64).unbind(0)
    assert loss(inputs(real, real), "prediction").abs() < 1e-6
    assert loss(inputs(fake, real), "prediction") > 0


def test_ssim_loss():
    torch.manual_seed(3)
    real, fake = torch.rand(2, 2, 3, 32, 32).unbind(0)
    assert create_loss("ssim")(inputs(real, real), "prediction").abs() < 1e-5
    assert create_loss("ssim")(inputs(fake, real), "prediction") > 0.5


def test_mask_correction():
    refined, clean = torch.rand(2, 2, 1, 16, 16).unbind(0)
    value = create_loss("mask_correction")(
        inputs(refined, clean, refined_driving_mask=refined, clean_driving_mask=clean), ""
    )
    torch.testing.assert_close(value, (refined - clean).abs().mean())
    with pytest.raises(CompatibilityError, match="perturbed_mask"):
        create_loss("mask_correction")(inputs(refined, clean), "")
