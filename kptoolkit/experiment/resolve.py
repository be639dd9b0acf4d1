"""From a config and the command line's choices to one resolved experiment, before any tensor.

Every entry point (`train`, `bench`, `config validate`, `reconstruct` / `animate`, the Python
API) asks this module which masker and generator run, with which parameters, which losses, and
what the keypoint detector does. What follows from the pair is derived here, once:

- the masker: as named, or the generator's natural one;
- each component's parameters and loss terms: its preset's (the experiment's `preset`, or the
  component's own `preset`; `kptoolkit.registry.presets`), then the explicit ones (`masker.params`,
  `generator.params`, `losses`), as `kptoolkit.experiment.components` gives them;
- what the detector fixes (`num_kp`, `estimate_jacobian`) is copied into the components that
  take it, and an explicit value that disagrees is an error;
- the generator's `mask_channels` from the masker's (`Masker.mask_channels_for`);
- the detector rule: none, frozen (read by the masker, needs a checkpoint) or trained jointly
  (the FOMM baseline).

Every problem is collected and reported together, each naming the components and the fix.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from kptoolkit.config.schema import ExperimentConfig, LossConfig
from kptoolkit.errors import CompatibilityError, ConfigError, KptoolkitError
from kptoolkit.experiment.components import (
    component_losses,
    component_params,
    detector_params,
    discriminator_params,
    experiment_losses,
    masker_name,
    natural_masker,
    needs_discriminator,
)
from kptoolkit.generators.base import Generator
from kptoolkit.maskers.base import Masker
from kptoolkit.nn.component import hook
from kptoolkit.registry.registries import GENERATORS, MASKERS, check_params, get_registry

# the detector rule of an experiment
NO_DETECTOR = "none"
FROZEN_DETECTOR = "frozen"  # a pretrained detector read by the masker (keypoints.checkpoint)
TRAINED_DETECTOR = "trained"  # trained with the generator (the FOMM baseline)

# keypoint-detector settings that a component taking a parameter of the same name must share
DETECTOR_FIXED = ("num_kp", "estimate_jacobian")


@attrs.frozen
class ResolvedExperiment:
    """The components of one experiment as they will be built."""

    masker: str
    generator: str
    masker_params: dict[str, Any]
    generator_params: dict[str, Any]
    losses: list[LossConfig]
    detector: str  # NO_DETECTOR, FROZEN_DETECTOR or TRAINED_DETECTOR
    detector_params: dict[str, Any]  # KeypointDetector's, when it is built from scratch
    discriminator_params: dict[str, Any] | None  # None: no loss needs a discriminator


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _mask_channels(factory: Callable[..., Any], params: Mapping[str, Any]) -> int:
    return int(hook(factory, "mask_channels_for", Masker)(params))


def _requires(factory: Callable[..., Any], params: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(hook(factory, "requires_for", Generator)(params))


@functools.lru_cache(maxsize=16)
def _checkpoint_shape(path: str, stamp: tuple[int, int]) -> dict[str, Any]:
    from kptoolkit.keypoints.loading import infer_detector_params
    from kptoolkit.utils.checkpoint_io import model_state, read_checkpoint

    return infer_detector_params(model_state(read_checkpoint(path), "detector", path))


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, stamp: tuple[int, int]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), computed once per path, size and modification time."""
    stat = Path(path).stat()
    return _file_sha256(str(path), (stat.st_mtime_ns, stat.st_size))


# the detector's shape as `keypoints.*` states it (what a run records of a detector file)
RECORDED_SHAPE = (
    "num_kp",
    "block_expansion",
    "max_features",
    "num_blocks",
    "scale_factor",
    "estimate_jacobian",
)


def record_detector_file(config: ExperimentConfig, checkpoint: str) -> None:
    """Write into `config.keypoints` the detector file the experiment reads: its path, its
    sha256 and the shape read off its weights (which `keypoints.*` then state)."""
    stat = Path(checkpoint).stat()
    shape = _checkpoint_shape(str(checkpoint), (stat.st_mtime_ns, stat.st_size))
    keypoints = config.keypoints
    keypoints.checkpoint = str(checkpoint)
    keypoints.checkpoint_sha256 = file_sha256(checkpoint)
    for key in RECORDED_SHAPE:
        setattr(keypoints, key, shape[key])


def detector_settings(
    config: ExperimentConfig, checkpoint: str | None
) -> tuple[dict[str, Any], str]:
    """The `DETECTOR_FIXED` settings of the experiment's detector and where they come from: read
    off the checkpoint's shapes when there is one (`keypoints.*` are then ignored), else
    `keypoints.*`."""
    if checkpoint:
        stat = Path(checkpoint).stat()
        shape = _checkpoint_shape(str(checkpoint), (stat.st_mtime_ns, stat.st_size))
        return {key: shape[key] for key in DETECTOR_FIXED}, f"the detector in {checkpoint}"
    params = detector_params(config)
    return {key: params[key] for key in DETECTOR_FIXED}, "keypoints"


def _share_detector_settings(
    settings: Mapping[str, Any],
    source: str,
    name: str,
    factory: Callable[..., Any],
    params: dict[str, Any],
    path: str,
    problems: list[str],
) -> None:
    """Copy the detector's `settings` into `params` where the component takes them; report a
    disagreeing explicit value."""
    for key, wanted in settings.items():
        if not _accepts(factory, key):
            continue
        if key not in params:
            params[key] = wanted
        elif params[key] != wanted:
            where = f"keypoints.{key}" if source == "keypoints" else f"{source}: {key}"
            problems.append(
                f"{path}.params.{key}={params[key]} but '{name}' must match its keypoint detector "
                f"({where}={wanted}); drop {path}.params.{key} (it is derived from the detector)"
            )


def _check_params(kind: str, name: str, params: Mapping[str, Any], path: str) -> str | None:
    registry = get_registry(kind)
    try:
        check_params(registry.get(name), dict(params), f"{registry.singular} '{name}'")
    except KptoolkitError as exc:
        return f"{path}: {exc}"
    return None


def _resolve(
    config: ExperimentConfig, kp_checkpoint: str | None
) -> tuple[ResolvedExperiment | None, list[str]]:
    problems: list[str] = []
    generator = config.generator.name
    try:
        generator_factory = GENERATORS.get(generator)
    except KptoolkitError as exc:
        return None, [f"generator: {exc}"]
    masker = masker_name(config)
    try:
        masker_factory = MASKERS.get(masker)
    except KptoolkitError as exc:
        return None, [f"masker: {exc}"]

    try:  # the presets first: every later step reads them
        detector_widths = detector_params(config)
        masker_params = component_params(config, "maskers", config.masker, masker)
        generator_params = component_params(config, "generators", config.generator, generator)
    except ConfigError as exc:
        return None, [str(exc)]
    uses_detector = bool(hook(masker_factory, "needs_detector", Masker))
    checkpoint = (kp_checkpoint or config.keypoints.checkpoint) if uses_detector else None
    # the checkpoint is read only when a component takes what it fixes (all_k, fomm, ...)
    takes = any(
        _accepts(factory, key)
        for factory in (masker_factory, generator_factory)
        for key in DETECTOR_FIXED
    )
    if checkpoint and not takes and not Path(checkpoint).is_file():
        problems.append(f"keypoints.checkpoint: no such file: {checkpoint}")
    try:
        settings, source = detector_settings(config, checkpoint if takes else None)
    except (OSError, KptoolkitError) as exc:
        problems.append(f"keypoints.checkpoint: {exc}")
        settings, source = detector_settings(config, None)
    share = functools.partial(_share_detector_settings, settings, source)
    share(masker, masker_factory, masker_params, "masker", problems)
    if (
        hook(masker_factory, "needs_groundtruth", Masker)
        and _accepts(masker_factory, "scale_factor")
        and "scale_factor" not in masker_params
    ):
        # circles at the true joints, on the grid of the detector's padded heatmaps
        masker_params["scale_factor"] = detector_params(config)["scale_factor"]
    problem = _check_params("maskers", masker, masker_params, "masker")
    if problem:
        problems.append(problem)

    requires = _requires(generator_factory, generator_params)
    if "keypoints" in requires:
        share(generator, generator_factory, generator_params, "generator", problems)
        requires = _requires(generator_factory, generator_params)
    channels = _mask_channels(masker_factory, masker_params)
    if "mask" in requires and _accepts(generator_factory, "mask_channels"):
        given = generator_params.get("mask_channels")
        if given is None:
            if channels != 1:
                generator_params["mask_channels"] = channels
        elif given != channels:
            problems.append(
                f"generator.params.mask_channels={given} but masker '{masker}' gives "
                f"{channels}-channel masks: drop generator.params.mask_channels (it is derived "
                "from the masker)"
            )
    problem = _check_params("generators", generator, generator_params, "generator")
    if problem:
        problems.append(problem)

    provides = frozenset(hook(masker_factory, "provides", Masker))
    missing = requires - provides
    if missing:
        problems.append(
            f"masker '{masker}' provides {sorted(provides)} but generator '{generator}' requires "
            f"{sorted(requires)} (missing: {', '.join(sorted(missing))}); use --masker "
            f"{natural_masker(generator)} (its natural masker) or another generator"
        )

    if uses_detector and not checkpoint:
        problem = _frame_size_problem(config.data.frame_size, detector_widths)
        if problem:
            problems.append(problem)
    if not uses_detector:
        detector = NO_DETECTOR
    elif "keypoints" in requires:
        detector = TRAINED_DETECTOR
    else:
        detector = FROZEN_DETECTOR
    losses = experiment_losses(config)
    try:
        discriminator = discriminator_params(config) if needs_discriminator(losses) else None
    except KptoolkitError as exc:
        return None, [*problems, str(exc)]
    resolved = ResolvedExperiment(
        masker,
        generator,
        masker_params,
        generator_params,
        losses,
        detector,
        detector_widths,
        discriminator,
    )
    return resolved, problems


def detector_rule(config: ExperimentConfig) -> str:
    """What the experiment's keypoint detector does (NO_DETECTOR, FROZEN_DETECTOR or
    TRAINED_DETECTOR), read off its components' classes: before a detector file is chosen."""
    masker = MASKERS.get(masker_name(config))
    if not hook(masker, "needs_detector", Masker):
        return NO_DETECTOR
    generator = GENERATORS.get(config.generator.name)
    return (
        TRAINED_DETECTOR
        if "keypoints" in hook(generator, "requires", Generator)
        else FROZEN_DETECTOR
    )


def _frame_size_problem(frame_size: int, detector: Mapping[str, Any]) -> str | None:
    """Why the keypoint detector cannot take `frame_size` frames (its hourglass halves the
    downscaled frame `num_blocks` times), with the sizes that work; None when it can."""
    scale, blocks = float(detector["scale_factor"]), int(detector["num_blocks"])
    scaled = frame_size * scale
    multiple = 2**blocks
    if abs(scaled - round(scaled)) < 1e-6 and round(scaled) % multiple == 0:
        return None
    step = multiple / scale
    if abs(step - round(step)) > 1e-6:
        return None  # no whole-pixel rule to state; the network says it when it runs
    step = round(step)
    low = max(step, frame_size // step * step)
    sizes = ", ".join(str(size) for size in (low, low + step, low + 2 * step))
    return (
        f"data.frame_size={frame_size} does not fit the keypoint detector (scale_factor {scale:g}, "
        f"{blocks} hourglass blocks: frames must be multiples of {step} px, e.g. {sizes}); set "
        "data.frame_size, or keypoints.scale_factor / keypoints.num_blocks"
    )


def experiment_problems(config: ExperimentConfig, kp_checkpoint: str | None = None) -> list[str]:
    """Everything wrong with the experiment's masker x generator pair, one line each."""
    return _resolve(config, kp_checkpoint)[1]


def resolve_experiment(
    config: ExperimentConfig, kp_checkpoint: str | None = None
) -> ResolvedExperiment:
    """The experiment's components, parameters, losses and detector rule; one
    `CompatibilityError` listing every problem when the pair cannot be built. The detector's
    `num_kp` and `estimate_jacobian` are read off `kp_checkpoint` (else `keypoints.checkpoint`)
    when there is one."""
    resolved, problems = _resolve(config, kp_checkpoint)
    if problems or resolved is None:
        if len(problems) == 1:
            raise CompatibilityError(problems[0])
        raise CompatibilityError("; ".join(problems))
    return resolved


def dataset_params(
    config: ExperimentConfig, split: str, root: str | Path | None = None
) -> tuple[str, dict[str, Any]]:
    """(dataset name, constructor params) of the experiment's `split`.

    With `root`, a FOMM-layout folder read by `fomm_frames` replaces the configured dataset.
    """
    name = "fomm_frames" if root is not None else config.data.dataset
    params: dict[str, Any] = {} if root is not None else dict(config.data.params)
    params.update(split=split, frame_size=config.data.frame_size, seed=config.seed)
    if split == "train":
        params["repeats"] = config.train.repeats
    masker = masker_name(config)
    if masker in MASKERS and hook(MASKERS.get(masker), "needs_groundtruth", Masker):
        params["groundtruth"] = True  # the masker draws each frame's ground-truth joints
    chosen = root if root is not None else config.data.root
    if chosen is not None:
        params["root"] = str(chosen)
    elif name == "fomm_frames":
        raise ConfigError(
            "the fomm_frames dataset needs a folder: set data.root (--set data.root=DIR), or "
            "--data DIR for reconstruction"
        )
    return name, params


def validate_components(config: ExperimentConfig) -> list[str]:
    """Every problem of the config's components, one line each: the masker x generator pair
    (`experiment_problems`), each loss and metric against its parameters, the dataset."""
    problems = experiment_problems(config)
    checks: list[tuple[str, str, str, dict[str, Any]]] = []
    for i, loss in enumerate(config.losses):
        checks.append(("losses", f"losses.{i}", loss.name, loss.params))
    for section, kind in (("masker", "maskers"), ("generator", "generators")):
        component = getattr(config, section)
        name = masker_name(config) if section == "masker" else component.name
        try:
            own = component_losses(config, kind, component, name)
        except KptoolkitError:
            continue  # the component itself is reported above
        for i, loss in enumerate(own):
            checks.append(("losses", f"{section}.losses.{i}", loss.name, loss.params))
    for i, metric in enumerate(config.metrics):
        checks.append(("metrics", f"metrics.{i}", metric.name, metric.params))
    try:
        checks.append(("datasets", "data", *dataset_params(config, "train")))
    except ConfigError as exc:
        problems.append(f"data: {exc}")
    for kind, path, name, params in checks:
        problem = _check_params(kind, name, params, path)
        if problem:
            problems.append(problem)
    return problems
