"""The loop the screens share: run a surrogate over seeds and print one line per run."""

import time
from collections.abc import Iterable, Sequence

from llmbo.benchmarks.runner import build_surrogate, run_one
from llmbo.cli.bench import parse_seeds, parse_value
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


def parse_options(settings: Iterable[str]) -> dict[str, object]:
    """``KEY=VALUE`` settings (as ``llmbo bench --set`` without ``METHOD:``) as a dict."""
    options = {}
    for item in settings:
        key, value = item.split("=", 1)
        options[key] = parse_value(value)
    return options


def run_pools(
    label: str, method: str, pools: str, seeds: str, template: str, options: dict[str, object]
) -> None:
    """:func:`run_seeds` for each comma-separated pool and ``LO-HI`` seed range, printing
    ``label pool seed coverage seconds fit_fallbacks``."""
    for pool in pools.split(","):
        surrogate = build_surrogate(pool, method, template=template, options=options)
        run_seeds(
            [label],
            pool,
            method,
            parse_seeds(seeds),
            surrogate,
            ["fit_fallbacks"],
            template=template,
            options=options,
        )
