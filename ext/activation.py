"""Imported by MMEngine at the first lookup in the ``ext`` scope (the ``locations`` of :mod:`ext.registry`'s
registries, MMEngine's way of importing a plug-in's components lazily): it calls :func:`ext.activate`."""
import ext

ext.activate()
