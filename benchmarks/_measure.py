"""Run one command and report its wall time and peak memory as JSON.

Used by ``benchmarks/flows.py``: each measured run goes through a fresh copy of
this small process so that ``getrusage(RUSAGE_CHILDREN)`` sees only that run's
processes. ``ru_maxrss`` of the children is the peak resident set size of the
largest single process among the descendants that were waited for, which is
what "peak memory of a run" means here.

Usage::

    python _measure.py RESULT.json LOG.txt TIMEOUT_S SAMPLE(0|1) -- COMMAND...

With SAMPLE=1 a thread also polls the process tree with psutil (when it is
installed) as a cross-check for processes that nobody waits for.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time


def _sample_tree(pid: int, stop: threading.Event, peak: list[int]) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for proc in procs:
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                pass
        stop.wait(0.02)


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    result_path, log_path, timeout_s, sample = argv[0], argv[1], float(argv[2]), argv[3] == "1"
    command = argv[5:]
    sampled_peak = [0]
    stop = threading.Event()
    timed_out = False
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        # A new session lets a timeout end the whole process tree, not only its root.
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        sampler = threading.Thread(target=_sample_tree, args=(proc.pid, stop, sampled_peak))
        if sample:
            sampler.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
        seconds = time.perf_counter() - start
        stop.set()
        if sample:
            sampler.join()
    # Linux reports ru_maxrss in KiB.
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result = {
        "returncode": returncode,
        "timed_out": timed_out,
        "seconds": seconds,
        "peak_rss_bytes": peak_rss,
        "sampled_peak_rss_bytes": sampled_peak[0] if sample else None,
    }
    with open(result_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
