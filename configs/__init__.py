"""Configs: the model-size ladder (gpt.py), every sweep key (sweep_base.py), sweeps/*.py."""
