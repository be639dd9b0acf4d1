"""The device a run uses: what its hardware can do (`hardware`) and the precision and layout
resolved for it once per run (`precision`)."""
