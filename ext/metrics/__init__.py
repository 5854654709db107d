"""Metrics (``*_metric.py``), registered into BasicSR METRIC_REGISTRY and MMEngine METRICS."""
