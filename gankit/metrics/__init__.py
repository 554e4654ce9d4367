"""Quality metrics. Each is a small function of features or class probabilities and knows nothing
about training; `gankit eval` and the training loop call the same code."""
