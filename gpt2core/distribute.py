"""Where training steps run: one device, every local device, or a cluster of processes.

    default      tf.distribute's default strategy: one device, one XLA program per step
    mirrored     MirroredStrategy over the local GPUs, else the logical CPUs
                 (GPT2_LOGICAL_CPUS=N splits the CPU into N before TensorFlow starts)
    multiworker  MultiWorkerMirroredStrategy over the processes TF_CONFIG names

A multi-worker cluster is fragile at start-up: TensorFlow's own join waits forever for a
peer that never comes (its register timeout is not honoured, and it swallows SIGTERM). So
TF_CONFIG is checked here first (one line per mistake), then every task meets every other
at a barrier of our own (``rendezvous``: plain TCP on the tasks' own addresses, within
GPT2_CLUSTER_TIMEOUT seconds, default 60) before TensorFlow is asked to join. A cluster
that cannot form is one ClusterError, never a hang. (A watchdog thread around the join
cannot work: TensorFlow holds the GIL while it waits.) TensorFlow insists on joining
before it initialises its devices, so ``make_strategy("multiworker")`` must run in a
fresh process, before anything imports gpt2core._tf.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

from gpt2core import jsontext
from gpt2core.errors import UserError

STRATEGIES = ("default", "mirrored", "multiworker")
DEFAULT_CLUSTER_TIMEOUT_S = 60.0


class ClusterError(UserError):
    """TF_CONFIG or the cluster it names is unusable (one line)."""


# -- logical CPUs ----------------------------------------------------------------------------


def logical_cpus() -> int:
    """GPT2_LOGICAL_CPUS as a count (0 when unset)."""
    raw = os.environ.get("GPT2_LOGICAL_CPUS", "").strip()
    if not raw:
        return 0
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise ClusterError(f"GPT2_LOGICAL_CPUS must be an integer from 1 to 64, got {raw!r}")
    return int(raw)


def split_logical_cpus(tf) -> None:
    """Give the first CPU GPT2_LOGICAL_CPUS logical devices. TensorFlow allows it only
    before it initialises its devices: gpt2core._tf calls this at import."""
    n = logical_cpus()
    if n < 2:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:  # already initialised (a multi-worker join came first): too late
        pass


# -- TF_CONFIG -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """The part of TF_CONFIG we use: chief and worker addresses, and who we are."""

    jobs: dict[str, tuple[str, ...]]  # "chief"/"worker" -> ("host:port", ...)
    task_type: str
    index: int

    @property
    def address(self) -> str:
        return self.jobs[self.task_type][self.index]

    @property
    def is_chief(self) -> bool:
        """TensorFlow's rule: the "chief" task, or worker 0 when there is no chief."""
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.index == 0

    @property
    def peers(self) -> list[str]:
        return [a for job in self.jobs.values() for a in job if a != self.address]

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.jobs.values())


def read_tf_config(raw: str | None = None) -> Cluster:
    """Parse and check TF_CONFIG (or ``raw``); any mistake is one ClusterError line."""
    if raw is None:
        raw = os.environ.get("TF_CONFIG")
    if raw is None or not raw.strip():
        raise ClusterError(
            "--strategy multiworker reads the cluster from TF_CONFIG, which is not set "
            '(e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}})'
        )
    try:
        conf = jsontext.loads(raw)
    except ValueError as e:  # not JSON, a number too long, nested too deep
        raise ClusterError(f"TF_CONFIG is not valid JSON ({e})") from None
    if not isinstance(conf, dict):
        raise ClusterError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    cluster, task = conf.get("cluster"), conf.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError("TF_CONFIG has no 'cluster' object (job name -> list of host:port)")
    if not isinstance(task, dict):
        raise ClusterError("TF_CONFIG has no 'task' object ({'type': ..., 'index': ...})")
    jobs: dict[str, tuple[str, ...]] = {}
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise ClusterError(
                f"TF_CONFIG: job {job!r} is not supported (only 'chief' and 'worker')"
            )
        if not isinstance(addresses, list) or not addresses:
            raise ClusterError(f"TF_CONFIG: cluster.{job} must be a non-empty list of host:port")
        for a in addresses:
            _check_address(a, job)
        jobs[job] = tuple(addresses)
    if len(jobs.get("chief", ())) > 1:
        raise ClusterError("TF_CONFIG: a cluster has at most one chief")
    every = [a for v in jobs.values() for a in v]
    if len(set(every)) != len(every):
        raise ClusterError("TF_CONFIG: an address appears twice in the cluster")
    kind, index = task.get("type"), task.get("index")
    if kind not in jobs:
        raise ClusterError(
            f"TF_CONFIG: task.type {kind!r} is not a job of the cluster ({', '.join(jobs)})"
        )
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise ClusterError(
            f"TF_CONFIG: task.index must be 0 to {len(jobs[kind]) - 1} for job {kind!r}, "
            f"got {index!r}"
        )
    return Cluster(jobs, kind, index)


def _check_address(a, job: str) -> None:
    host, _, port = a.rpartition(":") if isinstance(a, str) else ("", "", "")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ClusterError(f"TF_CONFIG: {a!r} in cluster.{job} is not host:port")


def cluster_timeout() -> float:
    raw = os.environ.get("GPT2_CLUSTER_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_CLUSTER_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise ClusterError(f"GPT2_CLUSTER_TIMEOUT must be seconds in (0, 86400], got {raw!r}")
    return value


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


_HELLO = "gpt2-cluster-1"


def _digest(cluster: Cluster) -> str:
    """The same for every task of one cluster (whatever the task), different otherwise."""
    import hashlib

    text = json.dumps({k: list(v) for k, v in sorted(cluster.jobs.items())})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _readline(sock: socket.socket, limit: int = 256) -> str:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("ascii", "replace").strip()


def rendezvous(cluster: Cluster, timeout_s: float) -> None:
    """A barrier of every task before TensorFlow joins (ClusterError after ``timeout_s``).

    Each task listens on its own address and answers ``gpt2-cluster-1 <digest>``; each
    task connects to every peer, checks the answer (a gpt2 worker of the same cluster)
    and names itself. A task leaves once it has checked every peer *and* every peer has
    checked it, so nobody closes its listener while a peer still needs it, and the port
    is free for TensorFlow's server straight after. What remains unguarded is a peer that
    dies in the second between this barrier and TensorFlow's join.
    """
    host, port = _split(cluster.address)
    try:
        listener = socket.create_server((host, port), backlog=64)
    except OSError as e:
        raise ClusterError(
            f"TF_CONFIG: cannot listen on this task's address {cluster.address} "
            f"({e.strerror or e}): is it this machine, and is the port free?"
        ) from None
    listener.settimeout(0.2)
    digest, peers = _digest(cluster), set(cluster.peers)
    checked_us: set[str] = set()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5.0)
                    conn.sendall(f"{_HELLO} {digest}\n".encode())
                    who = _readline(conn)
                    if who in peers:
                        checked_us.add(who)
                    conn.recv(1)  # the peer closes first: no TIME_WAIT left on our port
                except OSError:
                    pass

    server = threading.Thread(target=serve, name="gpt2-rendezvous", daemon=True)
    server.start()
    reached: set[str] = set()
    strangers: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while reached != peers or not peers <= checked_us:
            for peer in sorted(peers - reached):
                try:
                    sock = socket.create_connection(_split(peer), timeout=2.0)
                except OSError:
                    continue  # not listening (yet)
                with sock:
                    try:
                        hello = _readline(sock).split()
                    except OSError:  # connects, says nothing: not one of ours
                        hello = []
                    if hello[:1] != [_HELLO]:
                        strangers.add(peer)
                        continue
                    if hello[1:] != [digest]:
                        raise ClusterError(
                            f"multiworker: {peer} belongs to a different cluster "
                            f"(every worker needs the same TF_CONFIG cluster)"
                        )
                    try:
                        sock.sendall(f"{cluster.address}\n".encode())
                    except OSError:
                        continue
                    reached.add(peer)
                    strangers.discard(peer)
            if reached == peers and peers <= checked_us:
                break
            if time.monotonic() > deadline:
                raise ClusterError(
                    _rendezvous_failure(peers, reached, checked_us, strangers, timeout_s)
                )
            time.sleep(0.2)
    finally:
        done.set()
        listener.close()
        server.join(timeout=1.0)


def _rendezvous_failure(peers, reached, checked_us, strangers, timeout_s: float) -> str:
    if strangers:
        return (
            f"multiworker: {', '.join(sorted(strangers))} answers but is not a gpt2 worker "
            f"(wrong address or port in TF_CONFIG?)"
        )
    missing = sorted(peers - reached) or sorted(peers - checked_us)
    return (
        f"multiworker: cannot reach {', '.join(missing)} within {timeout_s:g}s (is every "
        f"worker started with the same TF_CONFIG cluster? set GPT2_CLUSTER_TIMEOUT to wait "
        f"longer)"
    )


# -- strategies ------------------------------------------------------------------------------


def make_strategy(name: str):
    """The tf.distribute strategy called ``name`` (see the module docstring)."""
    if name == "multiworker":
        return _join_cluster(read_tf_config(), cluster_timeout())
    from gpt2core._tf import tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name != "default":
        raise ClusterError(f"unknown --strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    return tf.distribute.get_strategy()


def _join_cluster(cluster: Cluster, timeout_s: float):
    if "gpt2core._tf" in sys.modules:
        raise ClusterError(
            "--strategy multiworker must start in a fresh process: TensorFlow has already "
            "initialised its devices here"
        )
    rendezvous(cluster, timeout_s)
    import signal

    import tensorflow as tf

    # TensorFlow's join installs its own SIGTERM handler (a preemption notifier that only
    # logs): put back the handlers a front end had, so SIGTERM still stops a run cleanly
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    handlers = {s: signal.getsignal(s) for n in names if (s := getattr(signal, n, None))}
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError, tf.errors.OpError) as e:
        raise ClusterError(f"multiworker: TensorFlow could not join the cluster ({e})") from None
    for sig, handler in handlers.items():
        if handler is not None:
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread: nothing of ours to restore
                pass
    return strategy


def is_chief(strategy_name: str) -> bool:
    """Whether this process writes the run's files: always, except on a multi-worker
    cluster's non-chief tasks (TF_CONFIG is checked by then)."""
    if strategy_name != "multiworker":
        return True
    return read_tf_config().is_chief


__all__ = [
    "STRATEGIES",
    "Cluster",
    "ClusterError",
    "read_tf_config",
    "rendezvous",
    "make_strategy",
    "split_logical_cpus",
    "is_chief",
]
