"""echod: an echo daemon and socket toolkit on Twisted."""

__version__ = "0.1.0"
