"""Training models (``*_model.py``), registered into BasicSR MODEL_REGISTRY and MMEngine MODELS."""
