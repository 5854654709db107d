"""Datasets (``*_dataset.py``), registered into BasicSR DATASET_REGISTRY and MMEngine DATASETS."""
