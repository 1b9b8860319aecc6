"""Shipped sweep configs: python -m experiments.sweep plan --config configs/sweeps/NAME.py."""
