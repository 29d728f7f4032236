"""The errors this project raises on purpose, each naming the file, key, image or step at fault and
what to do next. Catch them by type; their messages are for people.
"""

from __future__ import annotations


class CorruptFileError(ValueError):
    """A file exists but cannot be read (truncated, not the format its name says)."""


class UntrustedFileError(ValueError):
    """A checkpoint or weights file holds Python objects beyond plain weights; loading it could run
    code, so it is refused (``torch.load(..., weights_only=True)`` and the allow-list of
    :data:`advcam_pl.training.checkpoint.SAFE_GLOBALS`)."""


class ArchitectureMismatchError(ValueError):
    """A checkpoint was made for another network than the one configured."""


class NonFiniteError(FloatingPointError):
    """NaN or infinity in maps, a loss or weights (a diverged network); names the image or step."""


class StaleOutputsError(RuntimeError):
    """A stage's existing outputs were made with other settings or inputs than this run's."""


class ConfigError(ValueError):
    """A config value that cannot work, found when the config is composed (names the key)."""
