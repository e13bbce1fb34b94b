"""Capacity planning that answers a planner's questions (training: how many GPUs, how many
days, what cost; see training.py)."""
