"""The bench's defaults, each stated once: which rows it runs, the row improvements are stated
against, the oracle row, the learning rates per generator at the quick budget, the evaluators
it trains on synthetic data, and the profiles' names. Imports nothing: the command line reads
it to build its help."""

from __future__ import annotations

# the rows of a plain `kptoolkit bench`: the paper's method against its two baselines
DEFAULT_MASKERS: tuple[str, ...] = ("heatmap_sum",)
DEFAULT_GENERATORS: tuple[str, ...] = ("two_stage",)
DEFAULT_BASELINES: tuple[str, ...] = ("fomm", "x2face")
# improvements over this baseline's row are reported with paired intervals
REFERENCE_GENERATOR = "fomm"
# the oracle row: circles at the ground-truth joints, on synthetic data only
ORACLE_MASKER, ORACLE_GENERATOR = "gt_circles", "two_stage"
# the quick profile's learning rate per generator, chosen on the validation split
# (docs/benchmark-design.md); the others keep the config's
QUICK_LEARNING_RATES: dict[str, float] = {"two_stage": 1e-3, "x2face": 1e-3}
# the quick profile's departures from the published generators, chosen on the validation split
# (docs/benchmark-design.md, "Levers for the quick recipe"): each lets a row pass the source
# through from its first step, so its budget goes to the motion. FOMM ends as TPSMM does
# (its decoded frame blended with the warped source by the occlusion map); two_stage's
# refinement predicts a correction to the source; X2Face's warps start at the identity with a
# quarter of the offset range (the published code starts them random, with the full range)
QUICK_GENERATOR_PARAMS: dict[str, dict[str, object]] = {
    "fomm": {"blend_warped_source": True},
    "two_stage": {"source_residual": True},
    "x2face": {"zero_init": True, "residual_scale": 0.25},
}
# loss terms the quick profile adds to a generator's own: two_stage's frame also trains on the
# features of a small seeded random conv net (the keypoint-mask paper trains on VGG-19 features,
# which need ImageNet weights; random features share no objective with the evaluators)
QUICK_GENERATOR_LOSSES: dict[str, list[dict[str, object]]] = {
    "two_stage": [{"name": "feature_pyramid", "weight": 0.1, "outputs": ["prediction"]}],
}
# the evaluators the bench trains once per synthetic dataset
SYNTHETIC_EVALUATORS: dict[str, str] = {"pose": "synthetic_pose", "identity": "synthetic_id"}
# the profiles `--profile` takes (`kptoolkit.bench.profiles.PROFILES` defines them)
PROFILE_NAMES: tuple[str, ...] = ("micro", "quick", "standard", "full")
