"""The bench's stages, in the order they run: data, evaluators, detector prior, training,
reconstruction, scoring, with the stage cache that records what finished."""
