"""Milepost: the command line, the configuration and the assembly of the node."""

__version__ = "0.1.0"
