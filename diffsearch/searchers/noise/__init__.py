"""Noise searchers (``diffsearch noise --searcher``): see registry.py."""
