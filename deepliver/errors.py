"""Errors a user can act on: the CLI prints their message as one line, without a traceback."""


class DeepLiverError(Exception):
    """Bad input or a refused operation; the message names the file or series concerned."""
