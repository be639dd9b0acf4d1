"""Maskers: turn a frame into the structure (mask, keypoints, ...) that drives a generator."""
