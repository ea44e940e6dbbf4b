"""Data parallelism (``scriptlab.distributed``) on 4 forced CPU devices, and two processes.

The checks live in ``distributed_checks.py`` and run in subprocesses, because the device
count (``XLA_FLAGS=--xla_force_host_platform_device_count``) is fixed when JAX starts and
the rest of the suite stays on one device. One subprocess runs every check (compiling is
most of the cost) and prints a line per check; each test below reads its own line.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed_checks import CHECKS

SCRIPT = Path(__file__).with_name("distributed_checks.py")


def _env(devices: int) -> dict:
    flags = f"--xla_force_host_platform_device_count={devices} --xla_cpu_multi_thread_eigen=true"
    return {**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(Path(__file__).parents[1])}


# every test here compiles in a subprocess: slow (over 5 s), run outside the fast path
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(smoke, tmp_path_factory):  # smoke: the dataset is cached before the subprocess
    out = tmp_path_factory.mktemp("distributed")
    env = {**_env(4), "SCRIPTLAB_CHECKS_OUT": str(out)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900
    )
    lines = {}
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "FAIL"):
            name = rest.split(" ")[0].rstrip(":")
            lines[name] = line
    return proc, lines, out


@pytest.mark.parametrize("name", list(CHECKS))
def test_on_four_devices(report, name):
    proc, lines, _ = report
    assert name in lines, f"no line for {name} (exit {proc.returncode}): {proc.stderr[-3000:]}"
    assert lines[name].startswith("ok "), lines[name].replace(" | ", "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed(report, tmp_path):
    # jax 0.10.2 runs jax.distributed on CPU (gloo collectives): two processes of 2 devices
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--process-id", str(i), "--processes", "2"]
            + ["--port", str(port), "--out", str(tmp_path)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0 and f"ok process {i}" in out, f"process {i}: {err[-3000:]}"
    a, b = (np.load(tmp_path / f"process{i}.npz") for i in range(2))
    assert sorted(a) == sorted(b) and len(a) > 1
    for k in a:  # both hold the same replicated model and gathered maps
        assert np.array_equal(a[k], b[k]), k
    one = np.load(report[2] / "one_device_unlearn.npz")  # the same run on one device
    for k in one:
        np.testing.assert_allclose(a[k], one[k], rtol=2e-4, atol=2e-5, err_msg=k)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "checkpoint.json",
        "checkpoint.msgpack",
    ]
