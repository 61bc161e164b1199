"""Shared by the examples: the --smoke flag (tiny runs, used by CI) and an output folder."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run (CI checks the example runs)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where files go (default: a temp folder)"
    )
    args = parser.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="llmbo-example-"))
    args.out.mkdir(parents=True, exist_ok=True)
    return args
