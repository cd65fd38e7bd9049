"""wyner_jax: the Variational Wyner model and IIAE for paired-domain representation learning."""

__version__ = "0.1.0"
