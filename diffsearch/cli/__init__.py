"""Command line: parsing and printing only; every job is a library call."""
