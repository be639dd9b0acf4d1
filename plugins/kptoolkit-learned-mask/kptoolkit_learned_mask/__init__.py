"""Example kptoolkit plugin: the `learned_projection` masker (registered by entry point)."""
