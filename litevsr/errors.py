"""The one exception litevsr raises for a user's problem."""


class LiteVSRError(ValueError):
    """A user-facing problem (bad path, bad config, bad data). The CLI prints it as one line."""
