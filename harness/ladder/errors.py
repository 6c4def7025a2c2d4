"""The ladder's one error type."""


class LadderError(ValueError):
    """A bad size spec, recipe or ladder setting; the message names the setting and how to fix it."""
