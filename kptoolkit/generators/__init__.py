"""Generators: synthesise the driving frame from the source frame and the two structures."""
