"""How long `llmbo report` takes to write a study's page, how big it is, and how long
headless Chromium takes to open it (issue 25's targets: a 60-trial study written in under
5 s, opened in under 1 s, under 5 MB; a 1,000-trial study under 20 MB).

Builds the studies with the public API (cached under --work), then times the command:

    python benchmarks/report_speed.py --output benchmarks/results/report_speed.md

The 60-trial study is a campaign on bh1 with the default preset (10 random starts, 50
suggestions); the 1,000-trial study runs the `components` preset on the Suzuki pool in
batches of 50 after 50 random starts, so most of its trials carry a recorded prediction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from llmbo import Optimizer
from llmbo.cli import main as llmbo
from llmbo.datasets import load_pool
from llmbo.optimizer import TableObjective


def build(path: Path, pool: str, preset: str, trials: int, batch: int, n_random: int) -> None:
    if path.exists():
        return
    data = load_pool(pool)
    space = data.space()
    objective = TableObjective(space, data.target)
    # The first n_random suggestions are random (below min_observations), then BO.
    opt = Optimizer(space, preset, storage=path, study_name="default", seed=0, progress=True,
                    min_observations=n_random)  # fmt: skip
    opt.run(objective, iterations=trials // batch, batch_size=batch)


def open_seconds(browser: str, page: Path, repeats: int) -> float:
    """Median seconds for headless Chromium to load and dump ``page``, less the same for
    an empty page (the browser's own start-up)."""

    def once(target: Path) -> float:
        start = time.perf_counter()
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", target.as_uri()],
            capture_output=True,
            check=True,
            timeout=120,
        )
        return time.perf_counter() - start

    blank = page.parent / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    pairs = [(once(page), once(blank)) for _ in range(repeats)]
    return statistics.median(p - b for p, b in pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "llmbo-report-speed"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    studies = {
        "60 trials (bh1, default preset)": (args.work / "s60.db", "bh1", "components-or-lora", 60, 1, 10),
        "1,000 trials (suzuki, components, batches of 50)": (
            args.work / "s1000.db", "suzuki", "components", 1000, 50, 50,
        ),
    }  # fmt: skip
    browser = next(
        (shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None
    )
    lines = [
        "# `llmbo report`: time to write, size, time to open",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on "
        f"{platform.machine()} ({platform.processor() or 'CPU'}), 2 cores, no GPU; "
        f"`python benchmarks/report_speed.py` (median of {args.repeats}; opening = headless "
        "Chromium's load-and-dump of the page minus that of an empty page).",
        "",
        "| study | write (s) | size (MB) | open (s) |",
        "|---|---:|---:|---:|",
    ]
    for label, (path, pool, preset, trials, batch, n_random) in studies.items():
        build(path, pool, preset, trials, batch, n_random)
        out = args.work / f"{path.stem}.html"
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            assert llmbo(["report", str(path), "-o", str(out)]) == 0
            times.append(time.perf_counter() - start)
        size = out.stat().st_size / 2**20
        opened = open_seconds(browser, out, args.repeats) if browser else float("nan")
        row = f"| {label} | {statistics.median(times):.2f} | {size:.2f} | {opened:.2f} |"
        print(row, flush=True)
        lines.append(row)
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
