"""diffsearch: a search engine for the decisions around diffusion models."""

__version__ = "0.1.0"
