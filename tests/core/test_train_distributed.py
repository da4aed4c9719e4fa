"""Scale-out, tested rather than only written: MirroredStrategy over two logical CPUs, and
MultiWorkerMirroredStrategy over two real processes on 127.0.0.1, each against a one-device
run on the same global batch; a cluster that cannot form is one line and exit 2, quickly.

Devices are fixed once TensorFlow starts, and a worker must join its cluster before that,
so every run here is a fresh `gpt2 train` process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpt2core.distribute import ClusterError, read_tf_config
from tests.conftest import SHAKESPEARE

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
ENV.pop("TF_CONFIG", None)
ENV.pop("GPT2_LOGICAL_CPUS", None)
FLAGS = [
    "--preset", "tiny", "--block-size", "32", "--batch-size", "8", "--max-iters", "6",
    "--lr", "3e-3", "--warmup-iters", "1", "--eval-interval", "3", "--eval-iters", "1",
    "--log-interval", "1", "--no-progress", "--json",
]  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "small.txt"
    p.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    """The reference: one process, one device, the same global batch."""
    out = tmp_path_factory.mktemp("single") / "run"
    proc = start(corpus, out)
    summary = finish(proc)
    assert summary["replicas"] == 1 and summary["strategy"] == "default"
    return out


def start(corpus, out, *flags, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "repl.cli", "train", str(corpus), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, *FLAGS, *flags],
        cwd=ROOT,
        env={**ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def losses(out: Path) -> list[float]:
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


def weights(directory: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(directory / "model.safetensors"))


def assert_same_run(out: Path, ref: Path) -> None:
    a, b = losses(out), losses(ref)
    assert len(a) == len(b) == 6
    assert b[-1] < b[0] - 0.05  # the run learns, so equal curves mean equal training
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    wa, wb = weights(out / "last"), weights(ref / "last")
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=1e-5, err_msg=k)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_config(ports, index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


# -- two devices in one process --------------------------------------------------------------


def test_mirrored_over_two_logical_cpus_matches_one_device(corpus, tmp_path, single):
    out = tmp_path / "two"
    summary = finish(start(corpus, out, "--strategy", "mirrored", GPT2_LOGICAL_CPUS="2"))
    assert summary["replicas"] == 2 and summary["strategy"] == "mirrored"
    assert_same_run(out, single)


# -- two worker processes --------------------------------------------------------------------


def test_two_workers_train_like_one_process_and_only_the_chief_writes(corpus, tmp_path, single):
    ports = free_ports(2)
    chief_out, other_out = tmp_path / "chief", tmp_path / "other"
    workers = [
        start(corpus, out, "--strategy", "multiworker", TF_CONFIG=tf_config(ports, i))
        for i, out in enumerate([chief_out, other_out])
    ]
    summaries = [finish(w) for w in workers]
    for s in summaries:
        assert s["replicas"] == 2 and s["strategy"] == "multiworker" and s["iters"] == 6
    assert summaries[0]["val_loss"] == pytest.approx(summaries[1]["val_loss"], abs=1e-4)
    assert not other_out.exists()  # the other worker wrote nothing at all
    assert_same_run(chief_out, single)
    from gpt2core.specs import load_lm

    lm = load_lm(f"scratch:{chief_out}")
    assert lm.generate("ROMEO:").new_tokens > 0


def test_a_signal_to_one_worker_stops_both_after_the_same_step(corpus, tmp_path):
    """A worker that stopped alone would leave the other waiting in its next all-reduce
    forever; the stop vote travels with the step, so both stop after the same one."""
    ports = free_ports(2)
    chief_out = tmp_path / "chief"
    flags = ["--max-iters", "2000", "--eval-interval", "5000", "--strategy", "multiworker"]
    workers = [
        start(corpus, out, *flags, TF_CONFIG=tf_config(ports, i))
        for i, out in enumerate([chief_out, tmp_path / "other"])
    ]
    try:
        end = time.monotonic() + 240
        while len(losses(chief_out) if (chief_out / "metrics.jsonl").exists() else []) < 5:
            assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
            assert time.monotonic() < end, "the workers never started training"
            time.sleep(0.05)
        workers[1].send_signal(signal.SIGTERM)  # TensorFlow's own SIGTERM handler is undone
        results = [w.communicate(timeout=90) for w in workers]
    finally:
        for w in workers:
            w.kill()
    (_, chief_err), (_, other_err) = results
    assert workers[1].returncode == 128 + signal.SIGTERM, other_err
    assert workers[0].returncode == 130, chief_err
    step = json.loads((chief_out / "last" / "train_run.json").read_text())["step"]
    assert 5 <= step < 2000
    assert f"SIGTERM: stopped at iter {step}, the chief saved last/" in other_err
    assert f"another worker stopped: stopped at iter {step}, saved {chief_out}/last" in chief_err
    assert [r for r in range(1, step + 1)] == [
        json.loads(x)["iter"]
        for x in (chief_out / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "train"
    ]


@pytest.mark.parametrize(
    "env,needle",
    [
        ({}, "TF_CONFIG, which is not set"),
        ({"TF_CONFIG": '{"cluster": '}, "not valid JSON"),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}'}, "task.type"),
        ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
          '"index": 3}}'}, "task.index must be 0 to 0"),
        ({"TF_CONFIG": '{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", '
          '"index": 0}}'}, "is not host:port"),
        ({"TF_CONFIG": "PEER_ABSENT"}, "cannot reach 127.0.0.1:"),
        ({"TF_CONFIG": "PEER_SILENT"}, "answers but is not a gpt2 worker"),
        ({"TF_CONFIG": "SELF_TAKEN"}, "cannot listen on this task's address"),
    ],
    ids=["unset", "bad-json", "no-type", "bad-index", "bad-address", "absent-peer",
         "silent-peer", "port-taken"],
)  # fmt: skip
def test_a_cluster_that_cannot_form_is_one_line_exit_2_and_quick(corpus, tmp_path, env, needle):
    ports = free_ports(2)
    held = None
    if env.get("TF_CONFIG") in ("PEER_ABSENT", "PEER_SILENT", "SELF_TAKEN"):
        if env["TF_CONFIG"] != "PEER_ABSENT":  # something else listens where a worker should
            held = socket.create_server(("127.0.0.1", ports[env["TF_CONFIG"] == "PEER_SILENT"]))
        env = {"TF_CONFIG": tf_config(ports, 0), "GPT2_CLUSTER_TIMEOUT": "4"}
    out = tmp_path / "run"
    t0 = time.monotonic()
    proc = start(corpus, out, "--strategy", "multiworker", **env)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        if held is not None:
            held.close()
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_tf_config_reading():
    c = read_tf_config(
        '{"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]}, '
        '"task": {"type": "worker", "index": 1}}'
    )
    assert c.address == "h:3" and not c.is_chief and c.peers == ["h:1", "h:2"] and c.size == 3
    assert read_tf_config('{"cluster": {"worker": ["h:2"]}, "task": {"type": "worker", '
                          '"index": 0}}').is_chief  # fmt: skip
    for raw, needle in [
        ("[]", "JSON object"),
        ('{"cluster": {"ps": ["h:1"]}, "task": {}}', "'ps' is not supported"),
        ('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
         "appears twice"),
        ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty"),
        ('{"cluster": {"worker": ["h:99999"]}, "task": {"type": "worker", "index": 0}}',
         "not host:port"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": true}}',
         "task.index"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # json.loads: RecursionError
        ("{\"cluster\": " + "1" * 5000 + "}", "not valid JSON"),  # int-length ValueError
    ]:  # fmt: skip
        with pytest.raises(ClusterError, match=needle):
            read_tf_config(raw)
