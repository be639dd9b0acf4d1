"""Loss terms, each computing one named quantity from a batch and the model outputs."""
