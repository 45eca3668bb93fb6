"""litevsr: video super-resolution by steering a frozen video DiT with a State-Aware Adapter."""

__version__ = "0.1.0"


class LiteVSRError(ValueError):
    """A user-facing problem (bad path, bad config, bad data). The CLI prints it as one line."""
