"""The official FOMM-family files: their YAML configs, data layouts and training logs."""
