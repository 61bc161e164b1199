"""The loop the screens share: run a surrogate over seeds and print one line per run."""

import time
from collections.abc import Iterable, Sequence

from llmbo.benchmarks.runner import run_one
from llmbo.surrogates.base import Surrogate


def run_seeds(
    prefix: Sequence[object],
    pool: str,
    method: str,
    seeds: Iterable[int],
    surrogate: Surrogate,
    extra_columns: Sequence[str] = (),
    **run_options: object,
) -> None:
    """Run ``method`` with ``surrogate`` on ``pool`` for each seed and print
    ``*prefix pool seed coverage seconds *extra_columns`` (values of the run's row)."""
    for seed in seeds:
        start = time.time()
        result = run_one(pool, method, seed, surrogate=surrogate, **run_options)
        extra = [result.row[c] for c in extra_columns]
        coverage = result.row["top5_coverage"]
        print(*prefix, pool, seed, coverage, round(time.time() - start), *extra, flush=True)
