"""Map the training side of an official FOMM-family config: train_params, its loss weights,
reconstruction_params, animate_params and visualizer_params.

The importers fill a kptoolkit config held as plain data (`out`); every official key they cannot
represent becomes a warning on the `OfficialReader`.
"""

from __future__ import annotations

from typing import Any

from kptoolkit.config.official.configs import (
    FOMM,
    KEYPOINT_MASK,
    MONKEY_NET,
    PERTURBED_MASK,
    OfficialReader,
    is_number,
)
from kptoolkit.config.schema import number_or_text
from kptoolkit.errors import ConfigError

VGG19_LAYERS = 5  # relu1_1 ... relu5_1
MASK_CORRECTION_WEIGHT = 100.0  # hard-coded in the perturbed-mask code, from the second epoch


def _perceptual(output: str, scales: list[float], layer_weights: list[float]) -> dict[str, Any]:
    """A perceptual-pyramid loss term on `output`, without a weights file."""
    return {
        "name": "perceptual_pyramid",
        "weight": 1.0,
        "outputs": [output],
        "params": {"weights": None, "scales": scales, "layer_weights": layer_weights},
    }


def equivariance_term(params: dict[str, Any]) -> dict[str, Any]:
    """An equivariance loss term with `params`, as plain data."""
    return {"name": "equivariance", "weight": 1.0, "outputs": [], "params": params}


def mask_correction_term() -> dict[str, Any]:
    """The perturbed-mask code's mask-correction loss term, as plain data."""
    return {
        "name": "mask_correction",
        "weight": MASK_CORRECTION_WEIGHT,
        "outputs": [],
        "params": {"start_epoch": 1},
    }


def import_train(r: OfficialReader, out: dict[str, Any], family: str) -> None:
    """Map train_params (epochs, batch, learning rates, loss weights) into `out`."""
    t = "train_params"
    train = out["train"]
    if not r.has(t):
        r.warn(t, "missing; kptoolkit's published training settings are kept")
        return
    train["epochs"] = r.get(f"{t}.num_epochs", "int", train["epochs"])
    train["repeats"] = r.get(f"{t}.num_repeats", "int", 1)
    train["milestones"] = r.get(f"{t}.epoch_milestones", "ints", [])
    train["batch_size"] = r.get(f"{t}.batch_size", "int", train["batch_size"])
    lr_key = "lr" if family == MONKEY_NET else "lr_generator"  # one lr for all three networks
    train["lr"] = float(r.get(f"{t}.{lr_key}", "number", train["lr"]))
    others = {
        FOMM: {"lr_kp_detector": "the detector", "lr_discriminator": "the discriminator"},
        KEYPOINT_MASK: {},
        MONKEY_NET: {},
        PERTURBED_MASK: {"lr_mask_generator": "the mask generator"},
    }[family]
    for key, what in others.items():
        lr = r.get(f"{t}.{key}", "number", None)
        if lr is None or lr == train["lr"]:
            continue
        if key == "lr_discriminator" and not _gan_on(r):
            continue  # reported with the other unused adversarial settings
        r.warn(
            f"{t}.{key}",
            f"kptoolkit trains every network with train.lr ({train['lr']}), not {lr} for {what}",
        )
    if family == KEYPOINT_MASK:
        for key in ("lr_kp_detector", "lr_discriminator"):
            r.warn_if_present(
                f"{t}.{key}",
                "unused: the keypoint-mask code optimises the generator only (kptoolkit freezes "
                "the detector)",
            )
    if family == PERTURBED_MASK:
        r.warn_if_present(f"{t}.lr_kp_detector", "unused by the perturbed-mask code")
        r.warn_if_present(f"{t}.lr_discriminator", "unused by the perturbed-mask code")
    freq = r.get(f"{t}.checkpoint_freq", "int", None)
    if freq is not None:
        r.warn(
            f"{t}.checkpoint_freq",
            f"every {freq} epoch(s) in the official code; kptoolkit's train.checkpoint_every "
            f"counts steps, so it keeps {train['checkpoint_every']} (set it by hand)",
        )
    if family == MONKEY_NET:
        for key in ("detach_kp_generator", "detach_kp_discriminator"):
            r.warn_if_present(
                f"{t}.{key}",
                "kptoolkit's monkey_net trains the keypoints through the generator (no option)",
            )
        _import_monkey_net_losses(r, out)
        return
    _import_losses(r, out, family)


def _import_monkey_net_losses(r: OfficialReader, out: dict[str, Any]) -> None:
    """Monkey-Net's loss weights: `reconstruction` weighs the L1 distances of the discriminator's
    maps of real and generated frames, the first map being the frame itself. kptoolkit keeps
    that pixel term (an L1 pyramid of one scale) and the L1 of the deformed source
    (`reconstruction_deformed`); the discriminator's feature and GAN terms are not trained."""
    w = "train_params.loss_weights"
    weights = r.get(f"{w}.reconstruction", "numbers", [])
    terms = []
    if weights and weights[0]:
        terms.append(_l1("prediction", weights[0]))
    if any(weights[1:]):
        r.warn(
            f"{w}.reconstruction",
            f"only the pixel weight ({weights[0]}) is kept; the weights {weights[1:]} of the "
            "discriminator's feature maps need Monkey-Net's discriminator, which kptoolkit's "
            "monkey_net does not train",
        )
    deformed = r.get(f"{w}.reconstruction_deformed", "number", 0)
    if deformed:
        terms.append(_l1("deformed", deformed))
    for key in ("generator_gan", "discriminator_gan"):
        value = r.get(f"{w}.{key}", "number", 0)
        if value:
            r.warn(f"{w}.{key}", "unused: kptoolkit's monkey_net trains without a discriminator")
    if not terms:
        r.warn(w, "no pixel term: kptoolkit's monkey_net keeps an L1 of weight 1")
        terms.append(_l1("prediction", 1.0))
    out["losses"] = terms
    r.warn_if_present(
        "transfer_params",
        "animation options, not config keys: move_location is `kptoolkit animate --relative`, "
        "movement_mult `--adapt-scale`; the driving covariances are kept (adapt_variance off)",
    )
    r.warn_if_present("prediction_params", "Monkey-Net's video prediction is not in kptoolkit")


def _l1(output: str, weight: float) -> dict[str, Any]:
    """A plain L1 term (an L1 pyramid of the full scale only) on `output`."""
    return {
        "name": "l1_pyramid",
        "weight": float(weight),
        "outputs": [output],
        "params": {"scales": [1.0]},
    }


def _gan_on(r: OfficialReader) -> bool:
    """Whether the file trains adversarially (a non-zero generator_gan weight)."""
    weight = number_or_text(r.raw("train_params.loss_weights.generator_gan"))
    return is_number(weight) and weight != 0


def _import_losses(r: OfficialReader, out: dict[str, Any], family: str) -> None:
    """Map train_params.loss_weights into the loss terms of `out` and its scratch tables."""
    w = "train_params.loss_weights"
    scales = [float(s) for s in r.get("train_params.scales", "numbers", [1.0])]
    layers = [float(x) for x in r.get(f"{w}.perceptual", "numbers", [0.0] * VGG19_LAYERS)]
    if len(layers) > VGG19_LAYERS:
        raise ConfigError(
            f"official key '{w}.perceptual': at most {VGG19_LAYERS} weights (VGG19 relu1_1 .. "
            f"relu5_1), got {len(layers)}"
        )
    layers += [0.0] * (VGG19_LAYERS - len(layers))  # the official loop uses the first N layers
    perceptual_on = any(layers)
    if perceptual_on:
        out["losses"] = [_perceptual("prediction", scales, layers)]
        out["notes"].append(
            "losses.0.params.weights (and generator.losses.perceptual_pyramid.params.weights "
            "with the two-stage generator): set to a local torchvision VGG19 file "
            "(vgg19-dcbb9e9d.pth); kptoolkit never downloads it"
        )
    # the two-stage generators put the perceptual term on both stages
    out["component_losses"]["two_stage"] = (
        [_perceptual("low_res_prediction", scales, layers)] if perceptual_on else []
    )
    unused_family = {KEYPOINT_MASK: "keypoint-mask", PERTURBED_MASK: "perturbed-mask"}.get(family)

    gan = r.get(f"{w}.generator_gan", "number", 0)
    feature = r.get(f"{w}.feature_matching", "numbers", None)
    if unused_family:
        for key in ("generator_gan", "discriminator_gan", "feature_matching"):
            r.warn_if_present(f"{w}.{key}", f"unused: the {unused_family} code has no GAN")
    elif gan:
        extra = [{"name": "gan", "weight": float(gan), "outputs": ["prediction"], "params": {}}]
        if feature is not None and any(feature):
            extra.append(
                {
                    "name": "feature_matching",
                    "weight": 1.0,
                    "outputs": ["prediction"],
                    "params": {"layer_weights": [float(x) for x in feature]},
                }
            )
        out["component_losses"]["fomm"].extend(extra)
        d_weight = r.get(f"{w}.discriminator_gan", "number", 1)
        if d_weight != 1:
            r.warn(
                f"{w}.discriminator_gan",
                f"kptoolkit weights the discriminator's LSGAN objective by 1, not {d_weight}",
            )
    else:
        for key in ("discriminator_gan", "feature_matching", "lr_discriminator"):
            section = "train_params" if key.startswith("lr_") else w
            r.warn_if_present(
                f"{section}.{key}",
                "unused: generator_gan is 0 (no adversarial training, as in the official code)",
            )

    tp = "train_params.transform_params"
    if unused_family:
        for key in ("equivariance_value", "equivariance_jacobian"):
            r.warn_if_present(
                f"{w}.{key}",
                f"unused: the {unused_family} code trains no detector (a FOMM row keeps "
                "FOMM's published equivariance, its paper preset)",
            )
        r.warn_if_present(tp, f"unused by the {unused_family} code")
        return
    value = r.get(f"{w}.equivariance_value", "number", 0)
    jacobian = r.get(f"{w}.equivariance_jacobian", "number", 0)
    equivariance = [
        loss for loss in out["component_losses"]["fomm"] if loss["name"] != "equivariance"
    ]
    if value or jacobian:
        params = {"value_weight": float(value), "jacobian_weight": float(jacobian)}
        params["sigma_affine"] = float(r.get(f"{tp}.sigma_affine", "number", 0.05))
        params["sigma_tps"] = float(r.get(f"{tp}.sigma_tps", "number", 0.005))
        params["points_tps"] = r.get(f"{tp}.points_tps", "int", 5)
        equivariance.insert(0, equivariance_term(params))
    else:
        r.warn_if_present(tp, "unused: both equivariance weights are 0")
    out["component_losses"]["fomm"] = equivariance


def import_eval(r: OfficialReader, out: dict[str, Any]) -> None:
    """Map reconstruction_params and animate_params; warn about animation and display options."""
    rec, anim = "reconstruction_params", "animate_params"
    num_videos = r.get(f"{rec}.num_videos", "int", None)
    if num_videos is not None:
        out["eval"]["max_videos"] = num_videos
    formats = {key: r.get(f"{key}.format", "str", None) for key in (rec, anim)}
    for key, fmt in formats.items():
        if fmt is None or fmt == ".mp4":
            continue
        r.warn(
            f"{key}.format",
            f"kptoolkit writes lossless PNG frames and (eval.save_mp4) MP4 videos, not {fmt!r}",
        )
    if formats[rec] not in (None, ".mp4"):
        out["eval"]["save_mp4"] = False
    r.warn_if_present(
        f"{anim}.num_pairs",
        "not a kptoolkit config key (the animation step chooses its pairs)",
    )
    norm = f"{anim}.normalization_params"
    relative = r.get(f"{norm}.use_relative_movement", "bool", None)
    if relative is not None:
        r.warn(
            f"{norm}.use_relative_movement",
            f"an animation option, not a config key: use `kptoolkit animate "
            f"{'--relative' if relative else '(without --relative)'}`",
        )
    if r.get(f"{norm}.adapt_movement_scale", "bool", None) is not None:
        r.warn(
            f"{norm}.adapt_movement_scale",
            "an animation option, not a config key: `kptoolkit animate --relative --adapt-scale`",
        )
    if r.get(f"{norm}.use_relative_jacobian", "bool", None) is not None:
        r.warn(
            f"{norm}.use_relative_jacobian",
            "an animation option, not a config key: part of `kptoolkit animate --relative`",
        )
    r.warn_if_present(
        "visualizer_params",
        "visualisation settings (kp_size, draw_border, colormap) are not configurable",
    )
