"""The bench's plan: what it was asked to do (`BenchOptions`) and the rows that run (`Entry`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from kptoolkit.bench.defaults import DEFAULT_BASELINES, ORACLE_GENERATOR, ORACLE_MASKER
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.components import natural_masker
from kptoolkit.generators.base import Generator
from kptoolkit.maskers.base import Masker
from kptoolkit.nn.component import hook
from kptoolkit.registry.registries import GENERATORS, MASKERS


@attrs.frozen
class Entry:
    """One row of the bench: a masker x generator pair, a variant or a baseline."""

    masker: str
    generator: str
    role: str  # "variant" or "baseline"

    @property
    def label(self) -> str:
        """The row's name in the tables."""
        if self.role == "baseline":
            return (
                hook(GENERATORS.get(self.generator), "baseline_label", Generator) or self.generator
            )
        if self.role == "oracle":
            return f"Oracle: {self.masker} + {self.generator} (ground-truth joints)"
        return f"{self.masker} + {self.generator}"

    @property
    def slug(self) -> str:
        """The row's folder name."""
        return f"{self.masker}+{self.generator}"


@attrs.define
class BenchOptions:
    """What `kptoolkit bench` was asked to do."""

    maskers: list[str]
    generators: list[str]
    baselines: list[str] = attrs.field(factory=lambda: list(DEFAULT_BASELINES))
    profile: str = "quick"
    out: str | None = None
    dataset: str | None = None
    kp_checkpoint: str | None = None
    config: str | None = None
    overrides: list[str] = attrs.field(factory=list)
    pose_evaluator: str | None = None
    id_evaluator: str | None = None
    device: str | None = None
    seeds: list[int] | None = None  # None: the config's own seed
    oracle: bool = False  # on data with ground-truth joints, add gt_circles + two_stage
    progress: bool = True
    jobs: int | None = 1  # runs trained at once (None: auto, one per CPU thread, one on a GPU)
    launcher: str = "local"  # where the rows train: a `kptoolkit.launchers` entry point
    launcher_params: dict[str, Any] = attrs.field(factory=dict)  # --launcher-set key=value


def split_names(text: str | Sequence[str] | None) -> list[str]:
    """'a,b , c' -> ['a', 'b', 'c'] (lists pass through); empty items dropped."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [item.strip() for item in items if item.strip()]


def plan_entries(
    maskers: Sequence[str], generators: Sequence[str], baselines: Sequence[str]
) -> list[Entry]:
    """Baselines first (each with its natural masker), then every masker x generator variant."""
    if not maskers or not generators:
        raise ConfigError("bench needs at least one --masker and one --generator")
    for name in maskers:
        MASKERS.get(name)  # an unknown name raises with the closest matches
    for name in [*generators, *baselines]:
        GENERATORS.get(name)
    entries = [Entry(natural_masker(g), g, "baseline") for g in baselines]
    entries += [Entry(m, g, "variant") for g in generators for m in maskers]
    unique: list[Entry] = []
    for entry in entries:
        if all(e.slug != entry.slug for e in unique):
            unique.append(entry)
    return unique


def add_oracle(entries: list[Entry]) -> None:
    """Append the oracle row (ground-truth joints drawn as circles) unless it is planned."""
    oracle = Entry(ORACLE_MASKER, ORACLE_GENERATOR, "oracle")
    if all(e.slug != oracle.slug for e in entries):
        entries.append(oracle)


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as integers; a repeated or negative seed is a ConfigError."""
    seeds = [int(seed) for seed in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {seeds}")
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"--seeds must be >= 0, got {seeds}")
    return seeds


def default_out_dir(profile: str) -> Path:
    """`bench-results/<profile>` in the working directory."""
    return Path("bench-results") / profile


def needs_groundtruth(masker: str) -> bool:
    """Whether the masker draws the dataset's ground-truth joints (the oracle's)."""
    return bool(hook(MASKERS.get(masker), "needs_groundtruth", Masker))


def needs_detector(masker: str) -> bool:
    """Whether the masker reads a pretrained keypoint detector."""
    return bool(hook(MASKERS.get(masker), "needs_detector", Masker))


def component_overrides(overrides: Sequence[str], entries: Sequence[Entry]) -> dict[str, list[str]]:
    """The `--set masker.*` / `generator.*` values that every row's own masker or generator
    takes, by kind: each is applied to the rows whose component takes it. A parameter that no
    row's component takes is a ConfigError (it would be silently lost); the component choices
    (`masker.name`, `generator.name`) are not row values."""
    from kptoolkit.config.overrides import split_override

    found: dict[str, list[str]] = {"masker": [], "generator": []}
    for item in overrides:
        key = split_override(item)[0]
        kind, _, rest = key.partition(".")
        if kind not in found or rest == "name":
            continue
        found[kind].append(item)
        takers = {getattr(e, kind) for e in entries if getattr(e, kind)}
        if rest.startswith("params.") and not any(takes(kind, c, item) for c in takers):
            raise ConfigError(
                f"--set {key}: no row's {kind} takes '{rest.split('.')[1]}' (the rows' "
                f"{kind}s: {', '.join(sorted(takers))}); nothing was changed"
            )
    return found


def takes(kind: str, component: str, item: str) -> bool:
    """Whether the `--set` value `item` (`masker.*` or `generator.*`) applies to `component`:
    any value but a parameter the component's constructor does not take."""
    import inspect

    from kptoolkit.config.overrides import split_override

    rest = split_override(item)[0].partition(".")[2]
    if not rest.startswith("params."):
        return True
    registry = MASKERS if kind == "masker" else GENERATORS
    return rest.split(".")[1] in inspect.signature(registry.get(component)).parameters
