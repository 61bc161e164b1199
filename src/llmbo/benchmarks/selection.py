"""The all-pool table of the presets and the rule that chose the default.

The rule (written in ``benchmarks/README.md`` before the runs): among the presets that run
on every pool of the table, those taking at most :data:`MAX_SECONDS` per suggestion at
:data:`SPEED_N_TRAIN` observations on bh1 (``benchmarks/speed.py``), the one with the best
mean rank of top-5 % coverage over the pools (seeds 0–9, rank 1 best, ties share the mean
rank); ties on mean rank go to the faster preset. :func:`preset_table` applies it to the
results CSV and the speed CSV and writes the table as markdown, with the default's
coverage paired by seed against the best single baseline and the best peer of each pool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmbo.datasets import POOL_NAMES, POOLS
from llmbo.metrics import mean_and_sem

__all__ = [
    "BASELINES",
    "MAX_SECONDS",
    "PEERS",
    "SELECTION_SEEDS",
    "Selection",
    "preset_table",
    "select_default",
]

#: The seeds the rule uses (later seeds are not used to choose).
SELECTION_SEEDS: tuple[int, ...] = tuple(range(10))
#: The speed limit of the rule: seconds per suggestion ...
MAX_SECONDS = 5.0
#: ... at this many observations, on this pool.
SPEED_N_TRAIN = 60
SPEED_POOL = "bh1"
#: Presets that are baselines (no language model) for the paired comparison.
BASELINES: tuple[str, ...] = ("onehot", "components", "drfp", "morgan")
#: Peer tools run through the same protocol.
PEERS: tuple[str, ...] = ("tpe", "baybe")


@dataclass
class Selection:
    """What the rule chose and the numbers it used.

    Attributes:
        chosen: The selected preset (``None`` when no preset qualified).
        coverage: Mean top-5 % coverage per preset (rows) and pool (columns), seeds 0–9.
        sem: Standard errors of ``coverage``.
        seeds: Seeds per cell.
        ranks: Ranks of the candidates per pool (1 best).
        seconds: Seconds per suggestion at 60 observations on bh1 (NaN: not measured).
        candidates: Presets that run on every pool with all seeds.
        notes: Why presets were left out of the choice.
    """

    chosen: str | None
    coverage: pd.DataFrame
    sem: pd.DataFrame
    seeds: pd.DataFrame
    ranks: pd.DataFrame
    seconds: pd.Series
    candidates: list[str]
    notes: list[str] = field(default_factory=list)


def _runs(results: pd.DataFrame, method: str, pool: str, seeds: Sequence[int]) -> pd.DataFrame:
    """The protocol runs of ``method`` (no overrides) on ``pool``: the pool's default
    template for methods that read texts (any template otherwise), the packaged MiniLM,
    50 iterations, 10 initial points, one per iteration; one row per seed."""
    from llmbo.benchmarks.methods import METHODS
    from llmbo.datasets import load_pool

    keep = (
        (results["method"] == method)
        & (results["benchmark"] == pool)
        & results["seed"].isin(list(seeds))
    )
    # The protocol's settings, where the file records them (older files lack some columns).
    for column, value in (("iterations", 50), ("n_initial", 10), ("batch_size", 1)):
        if column in results.columns:
            keep &= results[column] == value
    rows = results[keep]
    if method in METHODS and METHODS.get(method).uses_model and pool in POOLS:
        template = load_pool(pool).default_template
        if "template" in rows.columns:
            rows = rows[rows["template"] == template]
        if "model" in rows.columns:
            rows = rows[rows["model"].fillna("") == "minilm"]
    return rows.drop_duplicates("seed").sort_values("seed")


def _seconds(speed: pd.DataFrame | None, preset: str) -> float:
    if preset == "random":
        return 0.0  # random search fits nothing
    if speed is None or speed.empty:
        return math.nan
    rows = speed[
        (speed["experiment"] == SPEED_POOL)
        & (speed["surrogate"] == preset)
        & (speed["n_train"] == SPEED_N_TRAIN)
    ]
    if rows.empty:
        return math.nan
    return float(rows.sort_values("date")["sec_per_iter"].iloc[-1])


def select_default(
    results: pd.DataFrame,
    speed: pd.DataFrame | None,
    presets: Sequence[str] | None = None,
    pools: Sequence[str] = POOL_NAMES,
    seeds: Sequence[int] = SELECTION_SEEDS,
) -> Selection:
    """Apply the rule to ``results`` (``reactions.csv``) and ``speed`` (``speed.csv``)."""
    from llmbo.presets import product_presets

    presets = list(presets or [p for p in product_presets() if p != "random"] + ["random"])
    cov = pd.DataFrame(index=presets, columns=list(pools), dtype=float)
    sem, n = cov.copy(), cov.copy()
    for preset in presets:
        for pool in pools:
            runs = _runs(results, preset, pool, seeds)
            if len(runs):
                cov.loc[preset, pool], sem.loc[preset, pool] = mean_and_sem(
                    runs["top5_coverage"].to_numpy(dtype=float)
                )
            n.loc[preset, pool] = len(runs)
    seconds = pd.Series({p: _seconds(speed, p) for p in presets}, dtype=float)
    notes: list[str] = []
    everywhere = [p for p in presets if (n.loc[p] == len(seeds)).all()]
    for p in presets:
        if p not in everywhere:
            short = [pool for pool in pools if n.loc[p, pool] < len(seeds)]
            notes.append(f"{p}: not on every pool with seeds {seeds[0]}–{seeds[-1]} ({short})")
    fast = []
    for p in everywhere:
        if math.isnan(seconds[p]):
            notes.append(f"{p}: no speed row at {SPEED_N_TRAIN} observations on {SPEED_POOL}")
        elif seconds[p] > MAX_SECONDS:
            notes.append(f"{p}: {seconds[p]:.2f} s per suggestion > {MAX_SECONDS:g} s")
        else:
            fast.append(p)
    ranks = cov.loc[fast].rank(ascending=False, method="average") if fast else cov.iloc[:0]
    chosen = None
    if fast:
        mean_rank = ranks.mean(axis=1)
        best = mean_rank.min()
        tied = [p for p in fast if np.isclose(mean_rank[p], best)]
        chosen = min(tied, key=lambda p: seconds[p])
    return Selection(chosen, cov, sem, n, ranks, seconds, fast, notes)


def _paired(results: pd.DataFrame, a: str, b: str, pool: str, seeds: Sequence[int]) -> str:
    """``a − b`` coverage paired by seed on ``pool``: mean ± s.e. (n)."""
    ra = _runs(results, a, pool, seeds).set_index("seed")["top5_coverage"]
    rb = _runs(results, b, pool, seeds).set_index("seed")["top5_coverage"]
    both = ra.index.intersection(rb.index)
    if len(both) < 2:
        return "—"
    diff = (ra.loc[both] - rb.loc[both]).to_numpy(dtype=float)
    mean, se = mean_and_sem(diff)
    return f"{mean:+.3f} ± {se:.3f} (n={len(both)})"


def preset_table(
    results: pd.DataFrame,
    speed: pd.DataFrame | None,
    default: str,
    pools: Sequence[str] = POOL_NAMES,
    seeds: Sequence[int] = SELECTION_SEEDS,
) -> tuple[str, Selection]:
    """Markdown of the all-pool table, the rule's choice, and ``default`` against the best
    baseline and the best peer of each pool; with the :class:`Selection` behind it."""
    sel = select_default(results, speed, pools=pools, seeds=seeds)

    def cell(p: str, pool: str) -> str:
        m, s, k = sel.coverage.loc[p, pool], sel.sem.loc[p, pool], int(sel.seeds.loc[p, pool])
        if k == 0:
            return "—"
        text = f"{m:.3f} ± {s:.3f}" if k > 1 else f"{m:.3f}"
        return text if k == len(seeds) else f"{text} (n={k})"

    header = ["preset", *pools, "mean", "mean rank", f"s / suggestion ({SPEED_POOL}, 60 obs)"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    mean_rank = sel.ranks.mean(axis=1) if len(sel.ranks) else pd.Series(dtype=float)
    for p in sel.coverage.index:
        full = (sel.seeds.loc[p] == len(seeds)).all()
        mean = f"{sel.coverage.loc[p].mean():.3f}" if full else "—"
        rank = f"{mean_rank[p]:.2f}" if p in mean_rank.index else "—"
        secs = "—" if math.isnan(sel.seconds[p]) else f"{sel.seconds[p]:.2f}"
        name = f"**{p}**" if p == sel.chosen else p
        lines.append(
            "| " + " | ".join([name, *(cell(p, pool) for pool in pools), mean, rank, secs]) + " |"
        )
    lines += [
        "",
        f"Chosen by the rule: **{sel.chosen}**." if sel.chosen else "No preset qualified.",
    ]
    lines += [f"- left out: {note}" for note in sel.notes]

    # The default against the best single baseline and the best peer of each pool.
    lines += [
        "",
        f"| pool | {default} | best baseline | {default} − baseline (paired) | best peer | "
        f"{default} − peer (paired) |",
        "|---|---:|---|---:|---|---:|",
    ]
    for pool in pools:
        mine = cell(default, pool) if default in sel.coverage.index else "—"
        row = [pool, mine]
        for group in (BASELINES, PEERS):
            scored = {}
            for m in group:
                runs = _runs(results, m, pool, seeds)
                if len(runs) == len(seeds):
                    scored[m] = float(runs["top5_coverage"].mean())
            if scored:
                best = max(scored, key=scored.__getitem__)
                row += [f"{best} {scored[best]:.3f}", _paired(results, default, best, pool, seeds)]
            else:
                row += ["—", "—"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n", sel
