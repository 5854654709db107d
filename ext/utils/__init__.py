"""Helpers shared by components, entry points and scripts."""
