"""Errors a user can hit. Each message names the bad file, row or value and says what to do."""

from __future__ import annotations


class WarmstartError(Exception):
    """Base class for every error warmstart raises on purpose."""


class DataError(WarmstartError, ValueError):
    """Input data is missing, malformed or unsuitable for the task."""


class BackboneError(WarmstartError, ValueError):
    """A backbone cannot be found, loaded or used as asked."""


class ArtifactError(WarmstartError, ValueError):
    """A saved artifact is incomplete, tampered with or does not match its backbone."""


class ParameterError(WarmstartError, ValueError):
    """A hyperparameter is out of range or of the wrong type."""


class ExportError(WarmstartError, RuntimeError):
    """An export that would not reproduce the trained model (failed parity check) or could not be written."""


class PushError(WarmstartError, RuntimeError):
    """An upload to a Hugging Face hub repository that was refused or could not reach the hub."""
