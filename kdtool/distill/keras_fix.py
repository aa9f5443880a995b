"""A workaround for Keras 3's ``fit`` under ``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585).

Kept apart from :mod:`kdtool.distill.cluster` because it reaches into Keras' private TensorFlow
trainer; delete it once Keras runs ``fit`` under that strategy as released.

Example:
    >>> fix_keras_for_multiworker()  # doctest: +SKIP
"""

from __future__ import annotations


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` spans several processes (as :func:`kdtool.distill.cluster.is_multi_worker`; no import
    of it here, so that cluster can import this module without a cycle).

    Example:
        >>> is_multi_worker(None)
        False
    """
    check = getattr(getattr(strategy, "extended", None), "_in_multi_worker_mode", None)
    return bool(check()) if callable(check) else False


def fix_keras_for_multiworker() -> None:
    """Work around Keras 3's ``fit`` under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two places in Keras' TensorFlow trainer all-reduce values that differ in shape across workers and
    fail: the first batch it peeks at to build the model (a tuple of per-worker batches), and the
    per-step logs (scalars reduced along an axis they do not have). Here the build uses this worker's
    own batch (only its shapes matter), and the logs are averaged over all replicas with one
    all-reduce. Only multi-worker strategies take the new paths; idempotent.

    Example:
        >>> fix_keras_for_multiworker()  # doctest: +SKIP
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_kdtool_multiworker_fix", False):
        return
    reduce_per_replica = tf_trainer.reduce_per_replica
    maybe_symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def local(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def reduce_logs(values, strategy, reduction="auto"):
        if reduction == "concat" or not is_multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction=reduction)
        op = "SUM" if reduction == "sum" else "MEAN"

        def one(v):
            return strategy.reduce(op, v, axis=None) if isinstance(v, tf.distribute.DistributedValues) else v

        return tf.nest.map_structure(one, values)

    def symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or not is_multi_worker(strategy):
            return maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(lambda v: local(v, strategy), next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_logs
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = symbolic_build
    tf_trainer._kdtool_multiworker_fix = True
