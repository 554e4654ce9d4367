"""gankit: train, watch, evaluate and sample GANs on image data."""

__version__ = "0.1.0"
