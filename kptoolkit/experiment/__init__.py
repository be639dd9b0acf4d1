"""From a config to what runs: the components chosen, the experiment resolved once into a
frozen plan, and the models built from that plan."""
