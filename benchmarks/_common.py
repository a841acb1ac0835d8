"""Helpers the benchmark scripts share."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """Facts about this machine and the software measured, for the JSON report."""
    cpu_model = None
    mem_total = None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        cpu_model = match.group(1) if match else None
        meminfo = Path("/proc/meminfo").read_text()
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
        mem_total = int(match.group(1)) * 1024 if match else None
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_bytes": mem_total,
    }


def pass_flags(result: Any) -> list[bool]:
    """Every pass flag in a nested benchmark result (values of keys 'pass' or 'passed')."""
    flags: list[bool] = []
    if isinstance(result, dict):
        for key, value in result.items():
            if key in ("pass", "passed") and isinstance(value, bool):
                flags.append(value)
            else:
                flags.extend(pass_flags(value))
    elif isinstance(result, list):
        for value in result:
            flags.extend(pass_flags(value))
    return flags
