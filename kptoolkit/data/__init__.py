"""Datasets, video IO, augmentation and the synthetic puppets."""
