"""Sweeps: a grid of models through every stage, locally or on SLURM; the demo."""
