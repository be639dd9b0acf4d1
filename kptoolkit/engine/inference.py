"""The former home of inference, kept for `kptoolkit.bench` until it imports the new modules.

Prediction is in `kptoolkit.engine.prediction`, the reconstruction protocol in
`kptoolkit.engine.reconstruction`, animation in `kptoolkit.engine.animation` and video probing in
`kptoolkit.data.video_io`; new code imports from there. This module re-exports only the names
the bench uses.
"""

from kptoolkit.engine.prediction import (
    compute_structure,
    expand_structure,
    first_of,
    generate,
    inference_models,
    quantize,
)
from kptoolkit.engine.reconstruction import (
    ReconstructionMode,
    reconstruct,
    reconstruction_batches,
    write_stacked_png,
)

__all__ = [
    "ReconstructionMode",
    "compute_structure",
    "expand_structure",
    "first_of",
    "generate",
    "inference_models",
    "quantize",
    "reconstruct",
    "reconstruction_batches",
    "write_stacked_png",
]
