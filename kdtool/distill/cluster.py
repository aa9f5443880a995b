"""``kdtool distill --strategy multiworker``: the cluster from ``TF_CONFIG``, who writes, and the handshake.

``TF_CONFIG`` is the JSON that Kubeflow's TFJob, Vertex AI and SageMaker set in every process of a
job: ``{"cluster": {"chief": [...], "worker": ["host:port", ...]}, "task": {"type": "worker",
"index": 1}}``. :func:`cluster_from_env` reads and checks it before TensorFlow loads: a malformed
one, a task that is not in the cluster, or ``--strategy multiworker`` without it is refused in one
line (exit code 2). A ``TF_CONFIG`` naming more than one task with another strategy is refused too
(every process would train alone and write the same folder); a one-task ``TF_CONFIG`` (what Vertex
AI sets for a single replica) is ignored.

The chief is the task of type ``chief``, or worker 0 when the cluster has no chief: TensorFlow's own
rule (``tensorflow.python.distribute.multi_worker_util.is_chief``). Only the chief writes the run
folder; the other workers keep their epoch backups in a temporary folder of their own.

Once the strategy is up (:func:`start_multiworker`), :func:`agree` compares every worker's
:func:`config_digest` (configuration, data fingerprint, ``--fresh``) with one all-reduce; workers
that disagree stop in one line (exit code 2). A worker that cannot reach the others within
``KDTOOL_CLUSTER_TIMEOUT`` seconds (default 300) stops with one line (exit code 1).

Example:
    >>> tf_config = '{"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 1}}'
    >>> c = parse_tf_config(tf_config)
    >>> c.is_chief, c.num_workers, c.describe()
    (False, 2, 'worker 1 of 2 (b:2222)')
    >>> parse_tf_config(tf_config.replace('"index": 1', '"index": 0')).is_chief
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import click

from kdtool.errors import InputError, RuntimeFailure

#: The task types that train (an evaluator or a parameter server has no part in a multiworker run).
TRAINING_TASKS = ("chief", "worker")
#: Environment variable: seconds a worker waits for the others before it gives up.
TIMEOUT_ENV = "KDTOOL_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Cluster:
    """One process's view of a multi-worker job, as ``TF_CONFIG`` describes it.

    Args:
        jobs: ``{"chief": [address], "worker": [address, ...]}`` (only the training jobs).
        task_type: this process's job, ``chief`` or ``worker``.
        index: this process's index in its job.

    Example:
        >>> c = Cluster({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 0)
        >>> c.is_chief, c.num_workers, c.address
        (False, 2, 'b:1')
    """

    jobs: dict
    task_type: str
    index: int

    @property
    def is_chief(self) -> bool:
        """The task of type ``chief``, or worker 0 when there is no chief (TensorFlow's rule)."""
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.index == 0 and not self.jobs.get("chief")

    @property
    def num_workers(self) -> int:
        """How many processes train (the chief counts: it trains too)."""
        return sum(len(self.jobs.get(t, [])) for t in TRAINING_TASKS)

    @property
    def address(self) -> str:
        """This task's ``host:port``."""
        return self.jobs[self.task_type][self.index]

    def describe(self) -> str:
        """``worker 1 of 2 (host:port)``, for log lines and error messages."""
        return f"{self.task_type} {self.index} of {self.num_workers} ({self.address})"


def parse_tf_config(text: str) -> Cluster:
    """Parse and check a ``TF_CONFIG`` value.

    Args:
        text: the JSON text.

    Returns:
        The :class:`Cluster`.

    Raises:
        InputError: malformed JSON, no ``cluster`` or ``task``, a task type other than chief or worker,
            an index outside its job, more than one chief, or an address that is not ``host:port``
            (one line each).

    Example:
        >>> parse_tf_config('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
        Traceback (most recent call last):
        ...
        kdtool.errors.InputError: TF_CONFIG: task worker 3 is outside the cluster (worker has 1 task: 0..0)
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(f"TF_CONFIG: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError("TF_CONFIG: expected a JSON object with 'cluster' and 'task'")
    cluster, task = doc.get("cluster"), doc.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise InputError("TF_CONFIG: no 'cluster' (a JSON object of job name -> list of host:port)")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise InputError("TF_CONFIG: no 'task' with 'type' and 'index' (this process's place in the cluster)")
    jobs = {}
    for name, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise InputError(f"TF_CONFIG: cluster job {name!r} must be a list of 'host:port' strings")
        if name in TRAINING_TASKS:
            for address in addresses:
                host, _, port = address.rpartition(":")
                if not host or not port.isdigit():
                    raise InputError(f"TF_CONFIG: {name} address {address!r} is not host:port")
            jobs[name] = list(addresses)
    task_type, index = task["type"], task["index"]
    if task_type not in TRAINING_TASKS:
        raise InputError(f"TF_CONFIG: task type {task_type!r} does not train; kdtool distill runs as chief or worker")
    if not isinstance(index, int) or isinstance(index, bool):
        raise InputError(f"TF_CONFIG: task index must be an integer, got {index!r}")
    size = len(jobs.get(task_type, []))
    if not 0 <= index < size:
        tasks = "task" if size == 1 else "tasks"
        span = f": 0..{size - 1}" if size else ""
        raise InputError(
            f"TF_CONFIG: task {task_type} {index} is outside the cluster ({task_type} has {size} {tasks}{span})"
        )
    if len(jobs.get("chief", [])) > 1:
        raise InputError(f"TF_CONFIG: at most one chief, got {len(jobs['chief'])}")
    return Cluster(jobs, task_type, index)


def cluster_from_env(strategy: str, environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The run's cluster: checked ``TF_CONFIG`` with ``--strategy multiworker``, else None.

    Args:
        strategy: ``kdtool distill --strategy``.
        environ: the environment (default ``os.environ``).

    Returns:
        The :class:`Cluster` with ``multiworker``; None with another strategy.

    Raises:
        InputError: ``multiworker`` without ``TF_CONFIG``, a bad ``TF_CONFIG``, or a ``TF_CONFIG`` of
            several tasks with another strategy (each process would train alone into the same folder).

    Example:
        >>> cluster_from_env("multiworker", {})
        Traceback (most recent call last):
        ...
        kdtool.errors.InputError: --strategy multiworker needs the TF_CONFIG environment variable (cluster and task)
        >>> cluster_from_env("auto", {}) is None
        True
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if strategy == "multiworker":
        if not text:
            raise InputError("--strategy multiworker needs the TF_CONFIG environment variable (cluster and task)")
        return parse_tf_config(text)
    if text:
        cluster = parse_tf_config(text)
        if cluster.num_workers > 1:
            raise InputError(
                f"TF_CONFIG names {cluster.num_workers} training tasks but --strategy is {strategy}: "
                "use --strategy multiworker, or unset TF_CONFIG to train on this machine alone"
            )
    return None


def cluster_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Seconds a worker waits for the others (``KDTOOL_CLUSTER_TIMEOUT``, default 300).

    Raises:
        InputError: a value that is not a positive number.

    Example:
        >>> cluster_timeout({}), cluster_timeout({"KDTOOL_CLUSTER_TIMEOUT": "30"})
        (300.0, 30.0)
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


def config_digest(config: dict, data_fingerprint: str, fresh: bool) -> str:
    """What every worker must agree on: the configuration (not its paths), the data and ``--fresh``.

    ``out`` and ``data`` may be spelt differently on each machine (a shared folder mounted at another
    path, a local copy of the data), so the data count by fingerprint and ``out`` not at all.

    Args:
        config: the run's configuration as run.json records it.
        data_fingerprint: :meth:`kdtool.data.FData.fingerprint`.
        fresh: ``--fresh``.

    Returns:
        A SHA-256 hex digest.

    Example:
        >>> a = config_digest({"epochs": 2, "out": "/mnt/a"}, "f00", False)
        >>> a == config_digest({"epochs": 2, "out": "/nfs/a"}, "f00", False)
        True
        >>> a == config_digest({"epochs": 3, "out": "/mnt/a"}, "f00", False)
        False
    """
    doc = {k: v for k, v in config.items() if k not in ("out", "data")}
    text = json.dumps({"config": doc, "data": data_fingerprint, "fresh": bool(fresh)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digests_agree(sums, squares, replicas: int) -> bool:
    """Whether every replica held the same digest, from the all-reduced sums of its bytes and their squares.

    For each byte, n * sum(x^2) == (sum x)^2 holds exactly when all n values are equal (Cauchy-Schwarz);
    bytes are at most 255, so the float32 sums are exact for up to 258 replicas.

    Example:
        >>> digests_agree([6.0, 2.0], [18.0, 2.0], 2)  # both replicas held bytes (3, 1)
        True
        >>> digests_agree([6.0, 2.0], [20.0, 2.0], 2)  # (2, 1) and (4, 1)
        False
    """
    return all(replicas * float(q) == float(s) ** 2 for s, q in zip(sums, squares, strict=True))


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` spans more than one process (a MultiWorkerMirroredStrategy with a cluster).

    Example:
        >>> is_multi_worker(None)
        False
    """
    extended = getattr(strategy, "extended", None)
    check = getattr(extended, "_in_multi_worker_mode", None)
    return bool(check()) if callable(check) else False


class Watchdog:
    """Stop the process with one line (exit code 1) unless :meth:`cancel` comes within ``timeout`` seconds.

    Args:
        line: what to print when it fires.
        timeout: seconds.

    Example:
        >>> dog = Watchdog("gave up", 60.0)
        >>> dog.cancel()
    """

    def __init__(self, line: str, timeout: float):
        self.line = line
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        click.secho(self.line, fg="red", err=True)
        os._exit(1)

    def cancel(self) -> None:
        """The cluster answered: do not fire."""
        self._timer.cancel()


def start_multiworker(cluster: Cluster):
    """Import TensorFlow and start ``tf.distribute.MultiWorkerMirroredStrategy``, with a watchdog running.

    TensorFlow refuses to set up collectives once it has run an op, so this comes before
    :func:`kdtool.train_extra.require_train_extra` (which runs one) and before anything lists devices.
    The watchdog (:class:`Watchdog`, :func:`cluster_timeout` seconds) runs until :func:`agree` cancels it.

    Args:
        cluster: this process's :class:`Cluster`.

    Returns:
        (the strategy, the running watchdog).

    Example:
        >>> strategy, dog = start_multiworker(parse_tf_config(os.environ["TF_CONFIG"]))  # doctest: +SKIP
    """
    timeout = cluster_timeout()
    from kdtool.train_extra import require_train_extra

    tf = require_train_extra("kdtool distill", warm_up=False)  # no op may run before the collectives
    others = [a for t in TRAINING_TASKS for a in cluster.jobs.get(t, []) if a != cluster.address]
    dog = Watchdog(  # started once TensorFlow has loaded (its import keeps stderr closed a while)
        f"{cluster.describe()}: could not reach the other workers ({', '.join(others)}) within {timeout:g} s "
        f"({TIMEOUT_ENV}); start every worker with the same TF_CONFIG cluster",
        timeout,
    )
    _register_timeout(cluster, timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.OpError as exc:  # the coordination service gave up waiting for the others
        dog.cancel()
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"{dog.line} ({reason})") from None
    from kdtool.distill.keras_fix import fix_keras_for_multiworker

    fix_keras_for_multiworker()
    return strategy, dog


def all_reduce_sum(strategy, cluster: Cluster, values):
    """Sum a float32 array over every replica of the cluster (a collective: every worker must call it).

    Args:
        strategy: the multi-worker strategy.
        cluster: this process's :class:`Cluster`.
        values: this replica's float32 array.

    Returns:
        The sum, as numpy.

    Raises:
        RuntimeFailure: a worker stopped answering (one line, exit code 1).

    Example:
        >>> all_reduce_sum(strategy, cluster, np.ones(2, np.float32))  # doctest: +SKIP
        array([2., 2.], dtype=float32)
    """
    import tensorflow as tf

    @tf.function
    def exchange():
        return tf.distribute.get_replica_context().all_reduce("SUM", tf.constant(values, tf.float32))

    try:
        return strategy.experimental_local_results(strategy.run(exchange))[0].numpy()
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"{cluster.describe()}: a worker stopped answering before training ({first})") from None


def all_ok(strategy, cluster: Cluster, ok: bool) -> bool:
    """Whether every worker reported ``ok`` (a collective: every worker must call it).

    Example:
        >>> all_ok(strategy, cluster, run_folder_is_usable)  # doctest: +SKIP
        True
    """
    import numpy as np

    total = all_reduce_sum(strategy, cluster, np.array([1.0 if ok else 0.0], np.float32))
    return float(total[0]) == float(strategy.num_replicas_in_sync)


def _register_timeout(cluster: Cluster, timeout: float) -> None:
    """Set TensorFlow's coordination service up as MultiWorkerMirroredStrategy would, with a timeout.

    The strategy leaves the time a worker waits for the others to register unbounded, inside C++ code
    that holds the interpreter (no Python timer or signal handler runs meanwhile; SIGTERM is ignored).
    With ``cluster_register_timeout_in_ms`` the wait ends in an error instead. These are TensorFlow's
    private modules: when they move, this does nothing and only the watchdog is left.
    """
    try:
        from tensorflow.python.eager import context

        try:
            from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        except ImportError:  # older layouts
            from tensorflow.tsl.protobuf import coordination_config_pb2
    except ImportError:
        return
    ctx = context.context()
    if ctx.coordination_service is not None:
        return
    leader = "chief" if cluster.jobs.get("chief") else "worker"
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster.jobs[job]))
        for job in TRAINING_TASKS
        if cluster.jobs.get(job)
    ]
    ctx.configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{leader}/replica:0/task:0",
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=int(timeout * 1000),
    )


def agree(strategy, cluster: Cluster, digest: str, dog: Watchdog | None = None) -> None:
    """Check, with one all-reduce, that every worker runs the same command; then cancel the watchdog.

    Args:
        strategy: the multi-worker strategy.
        cluster: this process's :class:`Cluster`.
        digest: this worker's :func:`config_digest`.
        dog: the watchdog :func:`start_multiworker` started (cancelled once every worker answered).

    Raises:
        InputError: the workers run different configurations, data or ``--fresh`` (one line, exit code 2).

    Example:
        >>> agree(strategy, cluster, config_digest(config, fd.fingerprint(), False), dog)  # doctest: +SKIP
    """
    import numpy as np

    raw = np.frombuffer(bytes.fromhex(digest), dtype=np.uint8).astype(np.float32)
    try:
        result = all_reduce_sum(strategy, cluster, np.stack([raw, raw * raw]))
    finally:
        if dog is not None:
            dog.cancel()
    if not digests_agree(result[0], result[1], strategy.num_replicas_in_sync):
        raise InputError(
            f"{cluster.describe()}: the workers run different commands (configuration, data or --fresh differ); "
            "start every worker with the same kdtool distill options and data"
        )
