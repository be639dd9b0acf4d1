"""Reading the networks of an official FOMM-family config (detector, generator, masker,
discriminator) into the sections of a kptoolkit config; `kptoolkit.config.importing` puts
them together."""

from __future__ import annotations

import math
from typing import Any

from kptoolkit.config.official.configs import (
    KEYPOINT_MASK,
    MONKEY_NET,
    PERTURBED_MASK,
    OfficialReader,
)


def import_detector(r: OfficialReader, out: dict[str, Any], family: str) -> None:
    kp, params = out["keypoints"], out["component_params"]
    common, det = "model_params.common_params", "model_params.kp_detector_params"
    channels = r.get(f"{common}.num_channels", "int", 3)
    if channels != 3:
        r.warn(f"{common}.num_channels", f"kptoolkit works on RGB frames, not {channels} channels")
    if family == PERTURBED_MASK:
        return
    if family == MONKEY_NET:
        import_monkey_net_detector(r, out)
        return
    kp["num_kp"] = r.get(f"{common}.num_kp", "int", kp["num_kp"])
    kp["estimate_jacobian"] = r.get(f"{common}.estimate_jacobian", "bool", False)
    params["fomm"]["num_kp"] = kp["num_kp"]
    params["fomm"]["estimate_jacobian"] = kp["estimate_jacobian"]
    scale = r.get(f"{det}.scale_factor", "number", None)
    common_scale = r.get(f"{common}.scale_factor", "number", None)
    kp["scale_factor"] = scale if scale is not None else (common_scale or 1.0)
    if common_scale is not None:  # the keypoint-mask generator's resolution too
        params["two_stage"]["scale_factor"] = common_scale
    kp["temperature"] = r.get(f"{det}.temperature", "number", kp["temperature"])
    kp["block_expansion"] = r.get(f"{det}.block_expansion", "int", kp["block_expansion"])
    kp["max_features"] = r.get(f"{det}.max_features", "int", kp["max_features"])
    kp["num_blocks"] = r.get(f"{det}.num_blocks", "int", kp["num_blocks"])
    if r.get(f"{det}.single_jacobian_map", "bool", False):
        r.warn(
            f"{det}.single_jacobian_map",
            "the keypoints section has no single_jacobian_map option (KeypointDetector has one)",
        )
    pad = r.get(f"{det}.pad", "int", 0)
    if pad != 0:
        r.warn(f"{det}.pad", f"kptoolkit's detector convolutions have no padding (not {pad})")
    if family == KEYPOINT_MASK:
        softmax_mask = r.get(f"{det}.softmax_mask", "bool", False)
        after_softmax = r.get(f"{det}.kp_after_softmax", "bool", False)
        if softmax_mask:
            out["masker"]["name"] = "softmax_sum"
        elif after_softmax:
            out["masker"]["name"] = "gaussian_circles"
        else:
            out["masker"]["name"] = "heatmap_sum"
        out["generator"]["name"] = "two_stage"
        out["notes"].append(
            "keypoints.checkpoint: the official code takes the frozen detector from "
            "--checkpoint_with_kp; set keypoints.checkpoint (e.g. taichi-cpk.pth.tar)"
        )


def import_fomm_generator(r: OfficialReader, out: dict[str, Any]) -> None:
    gen, dense = (
        "model_params.generator_params",
        "model_params.generator_params.dense_motion_params",
    )
    fomm = out["component_params"]["fomm"]
    for key in ("block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks"):
        fomm[key] = r.get(f"{gen}.{key}", "int", fomm[key])
    fomm["estimate_occlusion_map"] = r.get(f"{gen}.estimate_occlusion_map", "bool", False)
    fomm["dense_block_expansion"] = r.get(
        f"{dense}.block_expansion", "int", fomm["dense_block_expansion"]
    )
    fomm["dense_max_features"] = r.get(f"{dense}.max_features", "int", fomm["dense_max_features"])
    fomm["dense_num_blocks"] = r.get(f"{dense}.num_blocks", "int", fomm["dense_num_blocks"])
    fomm["scale_factor"] = r.get(f"{dense}.scale_factor", "number", 1.0)
    fomm["kp_variance"] = r.get(f"{dense}.kp_variance", "number", fomm["kp_variance"])
    out["generator"]["name"] = "fomm"
    out["masker"]["name"] = ""  # its natural masker: fomm_keypoints


def monkey_net_frame_size(r: OfficialReader, out: dict[str, Any]) -> None:
    """Monkey-Net's configs may state no frame shape (Tai-Chi's frames are stored at 64 px):
    then the frames are the size of the training crop."""
    stated = r.has("dataset_params.frame_shape") or r.has("dataset_params.image_shape")
    crop = out["data"]["augmentation"].get("crop")
    if not stated and crop:
        out["data"]["frame_size"] = int(crop[0])


def import_monkey_net_detector(r: OfficialReader, out: dict[str, Any]) -> None:
    """Monkey-Net's keypoint detector: the `monkey_net_keypoints` masker, trained with the
    generator (kptoolkit's FOMM detector section stays unused)."""
    common, det = "model_params.common_params", "model_params.kp_detector_params"
    params = out["component_params"]
    masker = params["monkey_net_keypoints"]
    num_kp = r.get(f"{common}.num_kp", "int", masker["num_kp"])
    masker["num_kp"] = params["monkey_net"]["num_kp"] = num_kp
    variance = r.get(
        f"{common}.kp_variance",
        "str" if isinstance(r.raw(f"{common}.kp_variance"), str) else "number",
        "matrix",
    )
    if variance != "matrix":
        r.warn(
            f"{common}.kp_variance",
            f"kptoolkit's Monkey-Net keypoints carry full covariances ('matrix'), not {variance!r}",
        )
    for key in ("block_expansion", "max_features", "num_blocks"):
        masker[key] = r.get(f"{det}.{key}", "int", masker[key])
    masker["temperature"] = r.get(f"{det}.temperature", "number", masker["temperature"])
    masker["scale_factor"] = r.get(f"{det}.scale_factor", "number", 1.0)
    masker["clip_variance"] = r.get(f"{det}.clip_variance", "number", None)
    out["masker"]["name"] = "monkey_net_keypoints"
    out["generator"]["name"] = "monkey_net"


def _require(r: OfficialReader, dotted: str, kind: str, expected: Any, default: Any) -> None:
    """Warn when the official value at `dotted` is not the one kptoolkit implements."""
    value = r.get(dotted, kind, default)
    if value != expected:
        r.warn(dotted, f"kptoolkit's monkey_net implements {expected!r} only, not {value!r}")


def import_monkey_net_generator(r: OfficialReader, out: dict[str, Any]) -> None:
    gen = "model_params.generator_params"
    dense, mask = f"{gen}.dense_motion_params", f"{gen}.dense_motion_params.mask_embedding_params"
    kp_embedding = f"{gen}.kp_embedding_params"
    mn = out["component_params"]["monkey_net"]
    for key in ("block_expansion", "max_features", "num_blocks", "num_refinement_blocks"):
        mn[key] = r.get(f"{gen}.{key}", "int", mn[key])
    mn["interpolation_mode"] = r.get(f"{gen}.interpolation_mode", "str", "nearest")
    if not r.has(dense):
        r.warn(dense, "missing (identity motion); kptoolkit's monkey_net always predicts motion")
    for key in ("block_expansion", "max_features", "num_blocks"):
        mn[f"dense_{key}"] = r.get(f"{dense}.{key}", "int", mn[f"dense_{key}"])
    mn["num_group_blocks"] = r.get(f"{dense}.num_group_blocks", "int", 0)
    mn["use_correction"] = r.get(f"{dense}.use_correction", "bool", False)
    mn["bg_init"] = r.get(f"{dense}.bg_init", "number", 2)
    mn["dense_scale_factor"] = r.get(f"{dense}.scale_factor", "number", 1.0)
    _require(r, f"{dense}.use_mask", "bool", True, False)
    _require(r, f"{mask}.use_heatmap", "bool", True, True)
    _require(r, f"{mask}.use_deformed_source_image", "bool", True, False)
    _require(r, f"{mask}.heatmap_type", "str", "difference", "gaussian")
    mn["use_difference"] = r.get(f"{mask}.use_difference", "bool", False)
    norm = r.raw(f"{mask}.norm_const")
    mn["norm_const"] = r.get(f"{mask}.norm_const", "number", 100) if norm != "sum" else 100
    if norm in (None, "sum"):
        r.warn(
            f"{mask}.norm_const",
            "kptoolkit divides the heatmaps by a constant (100), not by their sum",
        )
    mn["kp_embedding"] = r.has(kp_embedding)
    if mn["kp_embedding"]:
        mn["embedding_scale_factor"] = r.get(f"{kp_embedding}.scale_factor", "number", 1.0)
        _require(r, f"{kp_embedding}.use_heatmap", "bool", True, True)
        _require(r, f"{kp_embedding}.heatmap_type", "str", "difference", "gaussian")
        _require(r, f"{kp_embedding}.norm_const", "number", mn["norm_const"], None)
        for key in ("use_difference", "use_deformed_source_image", "add_bg_feature_map"):
            _require(r, f"{kp_embedding}.{key}", "bool", False, False)
    r.warn_if_present(
        "model_params.discriminator_params",
        "kptoolkit's monkey_net trains without Monkey-Net's discriminator",
    )


def import_two_stage(r: OfficialReader, out: dict[str, Any]) -> None:
    """The keypoint-mask / perturbed-mask generator: FOMM-style widths -> two_stage params."""
    gen = "model_params.generator_params"
    two = out["component_params"]["two_stage"]
    expansion = r.get(f"{gen}.block_expansion", "int", 64)
    max_features = r.get(f"{gen}.max_features", "int", 512)
    num_down = r.get(f"{gen}.num_down_blocks", "int", 2)
    two["features"] = min(max_features, expansion * 2**num_down)
    two["num_residual_blocks"] = r.get(f"{gen}.num_bottleneck_blocks", "int", 6)
    if two["features"] != 256:
        r.warn(
            f"{gen}.block_expansion",
            f"min(max_features, block_expansion * 2**num_down_blocks) = {two['features']}, but the "
            "official generator's first block always has 256 channels (it only runs with 256)",
        )
    ups = round(math.log2(1 / two["scale_factor"])) if two["scale_factor"] > 0 else -1
    if ups != num_down:
        r.warn(
            f"{gen}.num_down_blocks",
            f"kptoolkit derives the stage-1 up blocks from scale_factor {two['scale_factor']} "
            f"({ups}); the official generator's {num_down} do not match it",
        )
    r.warn_if_present(
        f"{gen}.estimate_occlusion_map", "unused by the two-stage generator (FOMM only)"
    )
    r.warn_if_present(f"{gen}.dense_motion_params", "unused by the two-stage generator (FOMM only)")


def import_perturbed_masker(r: OfficialReader, out: dict[str, Any]) -> None:
    mask = "model_params.mask_generator_params"
    pm = out["component_params"]["perturbed_mask"]
    pm["temperature"] = r.get(f"{mask}.temperature", "number", pm["temperature"])
    pm["block_expansion"] = r.get(f"{mask}.block_expansion", "int", pm["block_expansion"])
    pm["max_features"] = r.get(f"{mask}.max_features", "int", pm["max_features"])
    pm["num_blocks"] = r.get(f"{mask}.num_blocks", "int", pm["num_blocks"])
    pm["scale_factor"] = r.get(f"{mask}.scale_factor", "number", 1.0)
    out["component_params"]["two_stage"]["scale_factor"] = pm["scale_factor"]
    threshold = r.get("model_params.generator_params.th", "number", None)
    if threshold is not None:
        pm["threshold"] = threshold / 255
    out["masker"]["name"] = "perturbed_mask"
    out["generator"]["name"] = "two_stage"


def import_discriminator(r: OfficialReader, out: dict[str, Any], num_kp: int) -> None:
    disc = "model_params.discriminator_params"
    if not r.has(disc):
        return
    found: dict[str, Any] = {}
    scales = r.get(f"{disc}.scales", "numbers", None)
    if scales is not None:
        found["scales"] = scales
    for key in ("block_expansion", "max_features", "num_blocks"):
        value = r.get(f"{disc}.{key}", "int", None)
        if value is not None:
            found[key] = value
    variance = r.get(f"{disc}.kp_variance", "number", None)
    if variance is not None:
        found["kp_variance"] = variance
    if r.get(f"{disc}.use_kp", "bool", False):
        found["use_kp"] = True
        found["num_kp"] = num_kp
    if r.get(f"{disc}.sn", "bool", False):
        r.warn(f"{disc}.sn", "kptoolkit's discriminator has no spectral normalisation")
    out["discriminator"] = found
