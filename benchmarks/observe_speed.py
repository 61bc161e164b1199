"""How long storing a results file takes: one transaction (``record_many``, what ``llmbo
observe`` and ``Optimizer.tell`` use) against one transaction per row (``record``, what
they did before), side by side on the same machine, on a SQLite study file.

Run from the repository root:

    python benchmarks/observe_speed.py --rows 2000 --repeats 3

Appends one row per method and repeat to benchmarks/results/observe_speed.csv (date,
machine, rows, seconds) and prints them.
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from llmbo.storage import get_storage

RESULTS = Path("benchmarks/results/observe_speed.csv")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time(method: str, rows: int, folder: Path) -> float:
    storage = get_storage(folder / f"{method}.db")
    study = storage.create_study("s", space={}, config={}, seed=0, direction="maximize")
    items = [(f"c{i:06d}", float(i)) for i in range(rows)]
    start = time.perf_counter()
    if method == "record_many":
        storage.record_many(study.study_id, items)
    else:
        for cid, value in items:
            storage.record(study.study_id, cid, value)
    seconds = time.perf_counter() - start
    assert len(storage.trials(study.study_id)) == rows
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = f"{_cpu()}, {platform.machine()}, {platform.python_version()}"
    new = not RESULTS.exists()
    with RESULTS.open("a", newline="") as fh, tempfile.TemporaryDirectory() as tmp:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["date", "machine", "method", "rows", "repeat", "seconds"])
        for repeat in range(args.repeats):
            for method in ("record_many", "record_per_row"):
                folder = Path(tmp) / f"r{repeat}"
                folder.mkdir(exist_ok=True)
                seconds = _time(method, args.rows, folder)
                writer.writerow([date, machine, method, args.rows, repeat, f"{seconds:.4f}"])
                print(f"{method:15s} rows={args.rows} repeat={repeat} seconds={seconds:.3f}")


if __name__ == "__main__":
    main()
