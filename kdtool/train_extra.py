"""TensorFlow, imported lazily: only ``kdtool distill`` and ``kdtool export`` need it (the ``[train]`` extra).

``kdtool bench``, ``kdtool predict``, ``kdtool.data`` and the CLI's import path never import this module's
TensorFlow: the bench must run on a device with only the light install.
"""

from __future__ import annotations

from kdtool.errors import RuntimeFailure


def require_train_extra(what: str = "this command", warm_up: bool = True):
    """Import TensorFlow lazily, or fail in one line saying how to install it.

    Unless the environment already says otherwise, TensorFlow loads with its oneDNN kernels on
    (``TF_ENABLE_ONEDNN_OPTS=1``), as it does by itself on CPUs with AVX512_VNNI.

    Args:
        what: the command that needs TensorFlow, for the message.
        warm_up: run one op after the import (False where collectives must be configured first).

    Returns:
        The ``tensorflow`` module.

    Example:
        >>> tf = require_train_extra("kdtool distill")  # doctest: +SKIP
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow's x86 wheels turn their oneDNN kernels on by default only on CPUs with AVX512_VNNI or
    # newer; on an AVX2-only CPU its Eigen kernels ran kdtool's training steps 1.2-1.4x slower
    # (docs/decisions.md), and every earlier measurement here had oneDNN on. A setting of the
    # user's own wins; TensorFlow reads it when it loads.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    try:
        tf = _import_tensorflow_quietly(warm_up)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeFailure(
            f"{what} needs TensorFlow, which is not installed: run  pip install 'kdtool[train]'  ({exc})"
        ) from None
    return tf


def _import_tensorflow_quietly(warm_up: bool = True):
    """Import TensorFlow with the C++ start-up chatter (absl/oneDNN lines) kept off stderr.

    ``warm_up`` runs one op so its oneDNN notice is swallowed too; multi-worker runs pass False, because
    no op may run before their collectives are configured.
    """
    import os
    import sys

    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded, some test runners)
        import tensorflow as tf

        return tf
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        if warm_up:
            tf.constant(0.0) + 1.0  # the first op prints the oneDNN notice once more
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf
