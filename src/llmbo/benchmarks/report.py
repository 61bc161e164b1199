"""Summaries of the benchmark CSVs: a markdown table and a convergence figure.

Everything here reads the files :mod:`llmbo.benchmarks.runner` writes and returns text or
matplotlib figures; only the CLI writes files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmbo._imports import require
from llmbo.benchmarks.runner import CURVES_FILE, RESULTS_FILE, RUN_KEY, read_csv_rows
from llmbo.datasets import BH_POOL_NAMES, POOL_NAMES, POOLS, pool_maximizes
from llmbo.metrics import mean_and_sem

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "BH_POOLS",
    "complete_labels",
    "convergence_figure",
    "figure_methods",
    "load_curves",
    "load_results",
    "markdown_table",
    "summarize",
]

#: The pools averaged in the table's last column.
BH_POOLS: tuple[str, ...] = BH_POOL_NAMES
MEAN_COLUMN = "mean bh1–bh5"

_NUMERIC = (
    "seed",
    "iterations",
    "top5_coverage",
    "best_found",
    "pool_max",
    "seconds",
    "iteration",
    "best_so_far",
    "n_evaluated",
    "n_initial",
    "batch_size",
)


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in _NUMERIC:
        if col in frame.columns:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    for col in ("template", "model", "method", "benchmark"):
        if col in frame.columns:
            frame[col] = frame[col].fillna("").astype(str)
    return frame


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """``reactions.csv`` of a results folder with numeric columns as numbers.

    A trailing partial line (an interrupted write) is ignored; a run recorded twice
    keeps its last row.
    """
    frame = _numeric(read_csv_rows(Path(results_dir) / RESULTS_FILE))
    if frame.empty:
        return frame
    key = [c for c in RUN_KEY if c in frame.columns]
    return frame.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


def load_curves(results_dir: str | Path) -> pd.DataFrame:
    """``reactions_curves.csv`` with numeric columns (duplicate points: last kept)."""
    frame = _numeric(read_csv_rows(Path(results_dir) / CURVES_FILE))
    if frame.empty:
        return frame
    key = [c for c in (*RUN_KEY, "iteration") if c in frame.columns]
    return frame.drop_duplicates(subset=key, keep="last").reset_index(drop=True)


# ------------------------------------------------------------------- labels
def _short_model(model: str) -> str:
    return Path(model).name if ("/" in model or "\\" in model) else model


def _labels(frame: pd.DataFrame) -> pd.Series:
    """Row label: the method, plus template/model/iterations where those vary in ``frame``."""
    labels = frame["method"].astype(str)
    if "template" in frame.columns and frame["template"].nunique() > 1:
        labels = labels + " [" + frame["template"].astype(str) + "]"
    if "model" in frame.columns:
        models = frame["model"].astype(str)
        if models[models != ""].nunique() > 1:
            labels = labels + models.map(lambda m: f" @{_short_model(m)}" if m else "")
    if "iterations" in frame.columns and frame["iterations"].nunique() > 1:
        labels = labels + " (" + frame["iterations"].astype("Int64").astype(str) + " it.)"
    return labels


def _method_order(labels: Sequence[str], methods: Sequence[str]) -> list[str]:
    from llmbo.benchmarks.methods import DEFAULT_METHODS

    rank = {m: i for i, m in enumerate(DEFAULT_METHODS)}
    first = dict(zip(labels, methods, strict=True))
    return sorted(set(labels), key=lambda lab: (rank.get(first[lab], len(rank)), lab))


def _benchmark_order(names: Sequence[str]) -> list[str]:
    rank = {p: i for i, p in enumerate(POOL_NAMES)}
    return sorted(set(names), key=lambda p: (rank.get(p, len(rank)), p))


def _minimized(benchmark: str) -> bool:
    """Whether ``benchmark`` is a packaged pool that is minimised (its best value is the
    lowest); results of other names are taken as maximised."""
    return benchmark in POOLS and not pool_maximizes(benchmark)


def _benchmark_title(benchmark: str) -> str:
    """``benchmark``, marked ``(min)`` when the pool is minimised."""
    return f"{benchmark} (min)" if _minimized(benchmark) else benchmark


# ------------------------------------------------------------------- summary
def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (label, benchmark): seeds, coverage mean and s.e., best found, seconds.

    Columns: ``label, method, benchmark, n, coverage_mean, coverage_sem, best_found_mean,
    seconds_mean``. The standard error is ``std(ddof=1) / sqrt(n)`` over seeds (NaN for
    one seed).
    """
    columns = [
        "label",
        "method",
        "benchmark",
        "n",
        "coverage_mean",
        "coverage_sem",
        "best_found_mean",
        "seconds_mean",
    ]
    if results.empty:
        return pd.DataFrame(columns=columns)
    frame = results.assign(label=_labels(results))
    rows = []
    for (label, bench), group in frame.groupby(["label", "benchmark"], sort=False):
        cov_mean, cov_sem = mean_and_sem(group["top5_coverage"].to_numpy(dtype=float))
        rows.append(
            {
                "label": label,
                "method": group["method"].iloc[0],
                "benchmark": bench,
                "n": len(group),
                "coverage_mean": cov_mean,
                "coverage_sem": cov_sem,
                "best_found_mean": float(group["best_found"].mean()),
                "seconds_mean": float(group["seconds"].mean()) if "seconds" in group else math.nan,
            }
        )
    out = pd.DataFrame(rows, columns=columns)
    order = _method_order(out["label"].tolist(), out["method"].tolist())
    bench_order = _benchmark_order(out["benchmark"].tolist())
    out["_m"] = out["label"].map({lab: i for i, lab in enumerate(order)})
    out["_b"] = out["benchmark"].map({b: i for i, b in enumerate(bench_order)})
    return out.sort_values(["_m", "_b"]).drop(columns=["_m", "_b"]).reset_index(drop=True)


def _cell(mean: float, sem: float, n: int | None = None) -> str:
    text = f"{mean:.3f}" if math.isnan(sem) else f"{mean:.3f} ± {sem:.3f}"
    return text if n is None else f"{text} (n={n})"


def _mean_over_bh(summary: pd.DataFrame, label: str) -> tuple[float, float, int] | None:
    """Mean of the per-pool means over bh1..bh5 and its standard error, if all five ran.

    The pools are independent, so the standard error of the average of five means is
    ``sqrt(sum(sem_b**2)) / 5``; ``n`` is the smallest number of seeds of the five.
    """
    part = summary[(summary["label"] == label) & summary["benchmark"].isin(BH_POOLS)]
    if set(part["benchmark"]) != set(BH_POOLS):
        return None
    mean = float(part["coverage_mean"].mean())
    sem = float(np.sqrt(np.sum(part["coverage_sem"].to_numpy() ** 2)) / len(BH_POOLS))
    return mean, sem, int(part["n"].min())


def markdown_table(results: pd.DataFrame) -> str:
    """Markdown: top-5 % coverage (mean ± s.e. over seeds) per method × benchmark.

    The first table has one column per benchmark (``(min)`` marks a minimised pool) and,
    where a method ran on all of bh1..bh5, their mean; the second lists seeds, mean best
    value found (the lowest on a minimised pool) and mean seconds per run for every
    (method, benchmark).
    """
    summary = summarize(results)
    if summary.empty:
        return "_No benchmark results yet._\n"
    benches = _benchmark_order(summary["benchmark"].tolist())
    labels = list(dict.fromkeys(summary["label"]))
    with_mean = any(_mean_over_bh(summary, lab) is not None for lab in labels)
    header = ["method", *map(_benchmark_title, benches), *([MEAN_COLUMN] if with_mean else [])]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for lab in labels:
        cells = [lab]
        for bench in benches:
            hit = summary[(summary["label"] == lab) & (summary["benchmark"] == bench)]
            cells.append(
                _cell(hit["coverage_mean"].iloc[0], hit["coverage_sem"].iloc[0])
                if len(hit)
                else "—"
            )
        if with_mean:
            combined = _mean_over_bh(summary, lab)
            cells.append("—" if combined is None else _cell(combined[0], combined[1]))
        lines.append("| " + " | ".join(cells) + " |")

    lines += [
        "",
        "| benchmark | method | seeds | top-5 % coverage | best found | seconds / run |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_bench = summary.assign(_b=summary["benchmark"].map({b: i for i, b in enumerate(benches)}))
    by_bench = by_bench.sort_values("_b", kind="stable")
    for row in by_bench.itertuples(index=False):
        lines.append(
            f"| {_benchmark_title(row.benchmark)} | {row.label} | {row.n} | "
            f"{_cell(row.coverage_mean, row.coverage_sem)} | {row.best_found_mean:.2f} | "
            f"{row.seconds_mean:.1f} |"
        )
    return "\n".join(lines) + "\n"


def describe_runs(results: pd.DataFrame) -> str:
    """A few markdown lines on how the runs were made (hardware, versions, commits)."""
    if results.empty:
        return ""
    out = []
    for col, title in (
        ("hardware", "Hardware"),
        ("device", "Devices"),
        ("torch_version", "torch"),
        ("llmbo_version", "llmbo"),
        ("git_commit", "Commits"),
        ("library_versions", "Libraries (rows that record them)"),
        ("template", "Templates"),
        ("iterations", "Iterations"),
    ):
        if col in results.columns:
            values = sorted({str(v) for v in results[col] if str(v) not in ("", "nan")})
            if values:
                out.append(f"- {title}: {', '.join(values)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- plot
def complete_labels(curves: pd.DataFrame, benchmarks: Sequence[str] | None = None) -> list[str]:
    """Method labels (as in the report) with curves on every one of ``benchmarks``.

    ``benchmarks`` defaults to every benchmark in ``curves``.
    """
    if isinstance(benchmarks, str):
        benchmarks = [benchmarks]
    frame = curves.assign(label=_labels(curves))
    required = set(benchmarks) if benchmarks is not None else set(frame["benchmark"])
    covered = frame.groupby("label")["benchmark"].agg(set)
    order = _method_order(frame["label"].tolist(), frame["method"].tolist())
    return [lab for lab in order if required <= covered.get(lab, set())]


def figure_methods(
    curves: pd.DataFrame, *, max_methods: int = 12
) -> tuple[list[str] | None, str | None]:
    """The method labels the convergence figure draws, and a title that says which.

    Up to ``max_methods`` methods: every label (``None, None``). Beyond that, exploratory
    runs on one or two pools crowd the panels, so only the labels with curves on every pool
    of the table's mean (bh1..bh5 when all five are in ``curves``, else every pool) are
    drawn, provided at least two qualify.
    """
    has_bh = set(BH_POOLS) <= set(curves["benchmark"])
    complete = complete_labels(curves, BH_POOLS if has_bh else None)
    if len(complete) < 2 or curves["method"].nunique() <= max_methods:
        return None, None
    where = "bh1–bh5" if has_bh else "every pool"
    return complete, f"Methods run on {where}; exploratory runs are in reactions.md"


def convergence_figure(
    curves: pd.DataFrame,
    benchmarks: Sequence[str] | None = None,
    *,
    ncols: int = 3,
    methods: Sequence[str] | None = None,
) -> Figure:
    """Best value so far vs iteration: mean ± s.e. over seeds per method, a panel per pool
    (the running minimum on a minimised pool, whose title is marked ``(min)``).

    Args:
        curves: Rows of ``reactions_curves.csv`` (see :func:`load_curves`).
        benchmarks: Panels to draw, in order (default: every benchmark in ``curves``).
        ncols: Panels per row.
        methods: Method labels to draw, as the report writes them (default: all; see
            :func:`complete_labels` for those that ran on every pool).

    Returns:
        A matplotlib figure with one axes per benchmark (nothing is shown or saved).
    """
    require("matplotlib", "The convergence plot")
    from matplotlib.figure import Figure

    if curves.empty:
        raise ValueError("No convergence curves to plot.")
    frame = curves.assign(label=_labels(curves))
    benches = list(benchmarks) if benchmarks else _benchmark_order(frame["benchmark"].tolist())
    labels = _method_order(frame["label"].tolist(), frame["method"].tolist())
    if methods is not None:
        unknown = sorted(set(methods) - set(labels))
        if unknown:
            raise ValueError(f"No curves for methods {unknown}; known: {labels}.")
        labels = [lab for lab in labels if lab in set(methods)]
    ncols = max(1, min(ncols, len(benches)))
    nrows = math.ceil(len(benches) / ncols)
    fig = Figure(
        figsize=(4.2 * ncols, 3.4 * nrows + 0.25 * len(labels) // 2 + 0.5), layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=False)
    # 20 distinct colours, then the same colours dashed: every method stays tellable apart.
    palette = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown",
                                     "pink", "gray", "olive", "cyan")]  # fmt: skip
    colors = {lab: palette[i % 10] for i, lab in enumerate(labels)}
    styles = {lab: ("-", "--", ":", "-.")[(i // 10) % 4] for i, lab in enumerate(labels)}
    handles: dict[str, Any] = {}
    for k, ax in enumerate(axes.flat):
        if k >= len(benches):
            fig.delaxes(ax)
            continue
        bench = benches[k]
        for lab in labels:
            line = _draw_curve(ax, frame, bench, lab, color=colors[lab], style=styles[lab])
            if line is not None:
                handles.setdefault(lab, line)
        ax.set_title(_benchmark_title(bench))
        ax.set_xlabel("iteration")
        ax.set_ylabel("lowest so far" if _minimized(bench) else "best so far")
        ax.grid(alpha=0.3)
    # One legend for all panels, below them (seed counts per pool are in the markdown table).
    ordered = [lab for lab in labels if lab in handles]
    fig.legend(
        [handles[lab] for lab in ordered],
        ordered,
        loc="outside lower center",
        ncols=2 if len(ordered) > 6 else 3,
        fontsize="small",
        frameon=False,
    )
    return fig


def _draw_curve(
    ax: Any, frame: pd.DataFrame, bench: str, label: str, *, color: str, style: str
) -> Any:
    """Draw the mean curve (± s.e. band over seeds) of ``label`` on ``bench``; the line, or
    ``None`` when it has no complete curve there."""
    runs = frame[(frame["benchmark"] == bench) & (frame["label"] == label)]
    if runs.empty:
        return None
    table = runs.pivot_table(index="seed", columns="iteration", values="best_so_far")
    table = table.dropna(axis=0, how="any")
    if table.empty:
        return None
    x = table.columns.to_numpy(dtype=float)
    values = table.to_numpy(dtype=float)
    mean = values.mean(axis=0)
    (line,) = ax.plot(x, mean, color=color, ls=style, label=label, lw=1.6)
    if len(values) > 1:
        _, sem = mean_and_sem(values, axis=0)
        ax.fill_between(x, mean - sem, mean + sem, color=color, alpha=0.2, lw=0)
    return line
