"""Modelling: preprocessing stages, sampling, candidates, training, evaluation, registry."""
