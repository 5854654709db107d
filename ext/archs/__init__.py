"""Network architectures (``*_arch.py``), registered into BasicSR ARCH_REGISTRY and MMEngine MODELS."""
