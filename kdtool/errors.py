"""kdtool's own exceptions: each prints ONE line and sets the exit code.

``InputError`` is for anything the user handed us (a data folder, a model
file, an option combination): exit code 2, as click uses for usage errors.
``RuntimeFailure`` is for the environment (a missing optional dependency, a
full disk, a permission error): exit code 1.
"""

from __future__ import annotations

import click


class InputError(click.ClickException):
    """Bad user input (data, model file, option). Prints one line, exits 2.

    Args:
        message: the line to print; name the offending file in it.

    Example:
        >>> raise InputError("FData/X_train.npy: contains NaN")  # doctest: +SKIP
    """

    exit_code = 2


class RuntimeFailure(click.ClickException):
    """An environment failure (dependency, disk, permission). Exits 1."""

    exit_code = 1


class QualityGateFailed(click.ClickException):
    """A result was produced but failed a quality check (e.g. int8 drop). Exits 3."""

    exit_code = 3
