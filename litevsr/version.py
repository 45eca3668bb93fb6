"""litevsr's version, which exported adapters record."""

__version__ = "0.1.0"
