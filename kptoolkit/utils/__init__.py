"""Small services every layer uses: atomic writes, folder locks, cache paths, checkpoint IO."""
