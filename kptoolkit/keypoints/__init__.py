"""FOMM keypoint detector, its frozen wrapper, checkpoint loading and relative motion."""
