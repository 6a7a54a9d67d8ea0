"""devbox: a laptop replica of the system around your service."""

__version__ = "0.1.0"
