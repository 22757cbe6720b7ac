"""The package version, in a module at the bottom of the layers, so any layer may read it."""

__version__ = "0.1.0"
