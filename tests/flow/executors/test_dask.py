"""The Dask executor against a real `dask scheduler` and `dask worker` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inloop import Runner
from inloop.errors import ResourceUnavailableError
from inloop.flow.executors.dask import dask_resources

pytestmark = pytest.mark.dask
distributed = pytest.importorskip("distributed")

FLOWS = Path(__file__).parent.parent / "flows"
DASK = str(Path(sys.executable).parent / "dask")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [DASK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp"
    )


def _wait_for_workers(address: str, n: int, timeout: float = 60) -> None:
    with distributed.Client(address, timeout="30s") as client:
        client.wait_for_workers(n, timeout=timeout)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        _start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]),
    ]
    time.sleep(1.0)
    procs.append(
        _start(
            [
                "worker",
                address,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ]
        )
    )
    try:
        _wait_for_workers(address, 2)
        yield f"dask://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_flow_runs_on_dask_workers(scheduler: str) -> None:
    result = Runner(FLOWS / "dask_flow.py", show_output=False, executor=scheduler).run()
    run = result.run
    assert run.successful, run.error
    assert run.data.outs == [100, 101, 102, 103, 104, 105]
    assert os.getpid() not in run.data.pids


def test_a_resource_no_worker_has_fails_at_once(scheduler: str) -> None:
    started = time.monotonic()
    with pytest.raises(ResourceUnavailableError, match="GPU=1") as info:
        Runner(FLOWS / "gpu_flow.py", show_output=False, executor=scheduler).run()
    assert time.monotonic() - started < 30
    assert "--resources GPU=1" in str(info.value)


def test_a_worker_with_the_resource_takes_the_task(scheduler: str) -> None:
    address = "tcp://" + scheduler.split("://", 1)[1]
    gpu_worker = _start(
        [
            "worker",
            address,
            "--nthreads",
            "1",
            "--resources",
            "GPU=1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ]
    )
    try:
        _wait_for_workers(address, 3)
        run = Runner(FLOWS / "gpu_flow.py", show_output=False, executor=scheduler).run().run
        assert run.successful and run["train"].task.data.trained
    finally:
        gpu_worker.terminate()
        gpu_worker.wait(timeout=20)


def test_resource_mapping_rules() -> None:
    workers = {
        "a": {"resources": {}, "nthreads": 2, "memory_limit": 2 * 2**30},
        "b": {"resources": {"GPU": 2}, "nthreads": 1, "memory_limit": 2**30},
    }
    assert dask_resources({"gpu": 1, "cpu": 4}, workers, "s") == {"GPU": 1.0}
    with pytest.raises(ResourceUnavailableError, match="GPU=3"):
        dask_resources({"gpu": 3}, workers, "s")
    with pytest.raises(ResourceUnavailableError, match="memory=4096"):
        dask_resources({"memory": 4096}, workers, "s")
    declared = {"c": {"resources": {"CPU": 4, "MEMORY": 8 * 2**30}}}
    assert dask_resources({"cpu": 2, "memory": 1024}, declared, "s") == {
        "CPU": 2.0,
        "MEMORY": 1024.0 * 2**20,
    }


def test_local_dask_cluster_runs_a_flow() -> None:
    run = Runner(FLOWS / "dask_flow.py", show_output=False, executor="dask", max_workers=2)
    result = run.run().run
    assert result.successful and result.data.outs[-1] == 105
