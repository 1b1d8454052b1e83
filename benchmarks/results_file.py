"""Where benchmark figures are written: benchmarks/results/<name>-<time>.json (not committed)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The facts a reader needs to compare figures between runs."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()}


def save(name: str, figures: dict) -> Path:
    """Write ``figures`` (with the machine facts) as JSON, print them, return the file."""
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**figures, "machine": machine()}, indent=2)
    path.write_text(text)
    print(text)
    return path


def timed(fn, *args, **kwargs) -> float:
    """Seconds one call of ``fn`` takes."""
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started
