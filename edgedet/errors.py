"""The one exception type that the CLI turns into a single clear line and exit code 2."""


class EdgedetError(Exception):
    """Bad input or an unmet requirement that the user can fix; the message says how."""
