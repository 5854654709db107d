"""Losses (``*_loss.py``), registered into BasicSR LOSS_REGISTRY and MMEngine MODELS."""
