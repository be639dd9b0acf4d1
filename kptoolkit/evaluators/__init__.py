"""Pretrained-style evaluators (pose detectors, identity embedders) for AKD, MKR and AED."""
