"""aebench: what does an autoencoder learn? Pretrain, probe, plot, compare."""

__version__ = "0.3.0"
