"""Errors that mean "the user gave us something wrong": the CLI prints them as one line, no traceback."""


class FaceageError(Exception):
    """Base class for user-facing errors (bad params, missing data, bad input)."""


class ConfigError(FaceageError):
    """A parameter in params.yaml (or on the command line) is unknown or out of range."""


class DataError(FaceageError):
    """The data on disk is missing, in an unknown layout, or too broken to use."""
