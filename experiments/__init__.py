"""Bottleneck-redundancy study: models, training, metrics and the results writer."""
