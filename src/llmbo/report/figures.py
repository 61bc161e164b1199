"""A study's figures, as matplotlib figures (returned, never shown or saved here).

Every function takes a :class:`~llmbo.report.data.StudyData` and returns a
:class:`matplotlib.figure.Figure`, or ``None`` where the study lacks what the figure needs
(e.g. no recorded predictions).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmbo._imports import require
from llmbo.report.data import TOP_SHARE, StudyData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "calibration_figure",
    "catalyst_figure",
    "expected_random_best",
    "feature_map_figure",
    "importance_figure",
    "interval_coverage",
    "parallel_coordinates_figure",
    "progress_figure",
    "slice_figure",
]


def _figure(width: float = 7.0, height: float = 3.6, ncols: int = 1) -> tuple[Figure, Any]:
    require("matplotlib", "Study figures")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def expected_random_best(pool: np.ndarray, n: int, *, maximize: bool = True) -> np.ndarray:
    """Expected best value after ``1..n`` uniform draws without replacement from ``pool``.

    With the pool sorted from worst to best, the best of ``k`` draws is the ``i``-th value
    with probability ``C(i-1, k-1) / C(N, k)``.
    """
    values = np.sort(np.asarray(pool, dtype=float) * (1 if maximize else -1))
    big_n = len(values)
    i = np.arange(1, big_n + 1)
    out = []
    for k in range(1, min(n, big_n) + 1):
        log_p = _log_comb(i - 1, k - 1) - _log_comb(np.array(big_n), k)
        p = np.where(i >= k, np.exp(np.where(i >= k, log_p, -np.inf)), 0.0)
        out.append(float((p * values).sum()))
    best = np.asarray(out)
    return best if maximize else -best


def _log_comb(n: np.ndarray, k: int) -> np.ndarray:
    from scipy.special import gammaln

    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def _best_so_far(values: np.ndarray, maximize: bool) -> np.ndarray:
    return np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)


def _top_ids_mask(data: StudyData) -> tuple[np.ndarray, int] | None:
    """Per completed trial, whether it hit the pool's top 5 %; and the number of those."""
    if data.pool_values is None:
        return None
    pool = data.pool_values
    m = max(1, math.ceil(TOP_SHARE * len(pool)))
    order = np.sort(pool)
    threshold = order[-m] if data.maximize else order[m - 1]
    values = data.complete["value"].to_numpy(dtype=float)
    hits = values >= threshold if data.maximize else values <= threshold
    return hits, m


def progress_figure(data: StudyData) -> Figure | None:
    """Best value so far per completed trial and, when every pool value is known, the
    number of the pool's top-5 % found, each next to random search's expectation."""
    done = data.complete
    if done.empty:
        return None
    values = done["value"].to_numpy(dtype=float)
    x = np.arange(1, len(values) + 1)
    top = _top_ids_mask(data)
    fig, axes = _figure(ncols=2 if top is not None else 1, width=9 if top is not None else 6)
    ax = axes[0] if top is not None else axes
    ax.plot(x, values, "o", ms=3, alpha=0.45, color="tab:gray", label="measured")
    ax.step(
        x, _best_so_far(values, data.maximize), where="post", color="tab:blue", label="best so far"
    )
    if data.pool_values is not None:
        expected = expected_random_best(data.pool_values, len(values), maximize=data.maximize)
        ax.plot(np.arange(1, len(expected) + 1), expected, "--", color="tab:orange",
                label="random search (expected)")  # fmt: skip
        best = data.pool_values.max() if data.maximize else data.pool_values.min()
        ax.axhline(best, color="tab:green", lw=0.8, ls=":", label="pool best")
    ax.set(xlabel="trial", ylabel="value", title="Best so far")
    ax.legend(fontsize=8)
    if top is not None:
        hits, m = top
        ax2 = axes[1]
        ax2.step(x, np.cumsum(hits), where="post", color="tab:blue", label="found")
        n_pool = len(data.pool_values)  # type: ignore[arg-type]
        ax2.plot(x, x * m / n_pool, "--", color="tab:orange", label="random search (expected)")
        ax2.set(xlabel="trial", ylabel=f"of the top {m}", title="Top-5 % candidates found")
        ax2.set_ylim(0, max(m, 1) * 1.05)
        ax2.legend(fontsize=8)
    return fig


def interval_coverage(data: StudyData) -> float | None:
    """Share of measured values inside the 95 % interval predicted when suggested."""
    p = data.predictions
    if p.empty:
        return None
    inside = (p["value"] >= p["lower"]) & (p["value"] <= p["upper"])
    return float(inside.mean())


def calibration_figure(data: StudyData) -> Figure | None:
    """Predicted mean and 95 % interval at suggestion time against the measured value."""
    p = data.predictions
    if p.empty:
        return None
    fig, ax = _figure(width=5.2, height=4.4)
    inside = (p["value"] >= p["lower"]) & (p["value"] <= p["upper"])
    for mask, color, label in ((inside, "tab:blue", "inside"), (~inside, "tab:red", "outside")):
        part = p[mask]
        if part.empty:
            continue
        ax.errorbar(part["value"], part["mean"],
                    yerr=[part["mean"] - part["lower"], part["upper"] - part["mean"]],
                    fmt="o", ms=3.5, lw=0.8, alpha=0.8, color=color,
                    label=f"{label} the 95 % interval ({int(mask.sum())})")  # fmt: skip
    lo = float(np.nanmin([p["value"].min(), p["lower"].min()]))
    hi = float(np.nanmax([p["value"].max(), p["upper"].max()]))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.7)
    ax.set(xlabel="measured value", ylabel="predicted when suggested",
           title=f"Calibration: {inside.mean():.0%} inside the 95 % intervals")  # fmt: skip
    ax.legend(fontsize=8)
    return fig


def _embed(scores: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    if method == "pca" or scores.shape[1] <= 2:
        out = scores[:, :2]
        return out if out.shape[1] == 2 else np.column_stack([out[:, 0], np.zeros(len(out))])
    if method == "tsne":
        manifold = require("sklearn", "A t-SNE map").manifold
        perplexity = float(min(30, max(5, len(scores) // 4)))
        return manifold.TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(
            scores
        )
    if method == "umap":
        umap = require("umap", "A UMAP map")
        return umap.UMAP(random_state=seed).fit_transform(scores)
    raise ValueError(f"Unknown map method {method!r}; use pca, tsne or umap.")


def feature_map_figure(data: StudyData, method: str = "pca") -> Figure | None:
    """The candidates' features in 2-D before training and at the latest fit, coloured by
    value where it is known, measured candidates marked."""
    maps = [(k, data.maps[k]) for k in ("before", "after") if k in data.maps]
    if not maps:
        return None
    fig, axes = _figure(width=4.6 * len(maps), height=4.2, ncols=len(maps))
    axes = np.atleast_1d(axes)
    measured = data.complete.set_index("candidate_id")["value"]
    for ax, (key, rec) in zip(axes, maps, strict=True):
        xy = _embed(np.asarray(rec["scores"], dtype=float), method)
        ids = pd.Index(rec["ids"])
        is_measured = ids.isin(measured.index)
        if data.pool_series is not None:  # every candidate's value is known: colour all
            colour = data.pool_series.reindex(ids).to_numpy(dtype=float)
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=7, c=colour, cmap="viridis", label="pool")
            ax.scatter(xy[is_measured, 0], xy[is_measured, 1], s=26, facecolors="none",
                       edgecolors="red", linewidths=0.9, label="measured")  # fmt: skip
            label = "value"
        else:
            colour = measured.reindex(ids).to_numpy(dtype=float)
            ax.scatter(xy[~is_measured, 0], xy[~is_measured, 1], s=6, c="lightgray",
                       label="not measured")  # fmt: skip
            sc = ax.scatter(xy[is_measured, 0], xy[is_measured, 1], s=22, c=colour[is_measured],
                            cmap="viridis", edgecolors="black", linewidths=0.4,
                            label="measured")  # fmt: skip
            label = "measured value"
        when = (
            "before training" if key == "before" else f"at the latest fit ({rec['n_train']} obs.)"
        )
        ax.set(title=f"Features {when}", xlabel=f"{method.upper()} 1", ylabel=f"{method.upper()} 2")
        ax.set_xticks([])
        ax.set_yticks([])
        if np.isfinite(colour).any():
            fig.colorbar(sc, ax=ax, label=label, shrink=0.8)
    axes[0].legend(fontsize=8, loc="best")
    return fig


def _param_frame(data: StudyData) -> pd.DataFrame | None:
    if data.params is None:
        return None
    done = data.complete[["trial", "value"]]
    frame = data.params.merge(done, on="trial")
    return frame if len(frame) else None


def parallel_coordinates_figure(data: StudyData) -> Figure | None:
    """One line per completed trial across the searched parameters (scaled to [0, 1];
    log scale for parameters spanning decades), coloured by value."""
    frame = _param_frame(data)
    if frame is None:
        return None
    params = [c for c in frame.columns if c not in ("trial", "value")]
    scaled = pd.DataFrame({p: _unit(frame[p]) for p in params})
    fig, ax = _figure(width=max(6.0, 1.3 * len(params)), height=3.8)
    from matplotlib import colormaps, colors

    norm = colors.Normalize(frame["value"].min(), frame["value"].max())
    cmap = colormaps["viridis"]
    order = np.argsort(frame["value"].to_numpy() * (1 if data.maximize else -1))
    x = np.arange(len(params))
    for i in order:  # best drawn last, on top
        ax.plot(
            x, scaled.iloc[i].to_numpy(), color=cmap(norm(frame["value"].iloc[i])), lw=1, alpha=0.8
        )
    ax.set_xticks(x, params, rotation=20)
    ax.set(ylabel="scaled value", title="Parallel coordinates (colour: value)")
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="value")
    return fig


def _unit(column: pd.Series) -> pd.Series:
    if not pd.api.types.is_numeric_dtype(column):
        codes = column.astype("category").cat.codes.astype(float)
        return codes / max(codes.max(), 1)
    v = column.astype(float)
    if (v > 0).all() and v.max() / v.min() >= 100:
        v = np.log10(v)
    span = v.max() - v.min()
    return (v - v.min()) / span if span > 0 else v * 0 + 0.5


def slice_figure(data: StudyData) -> Figure | None:
    """Value against each searched parameter (one panel per parameter)."""
    frame = _param_frame(data)
    if frame is None:
        return None
    params = [c for c in frame.columns if c not in ("trial", "value")]
    cols = min(4, len(params))
    rows = math.ceil(len(params) / cols)
    require("matplotlib", "Study figures")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * cols, 2.7 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, p in zip(axes, params, strict=False):
        v = frame[p]
        numeric = pd.api.types.is_numeric_dtype(v)
        x = v.astype(float) if numeric else v.astype("category").cat.codes
        ax.scatter(
            x,
            frame["value"],
            c=frame["trial"],
            cmap="Blues",
            s=14,
            edgecolors="gray",
            linewidths=0.3,
        )
        if numeric and (v > 0).all() and v.max() / v.min() >= 100:
            ax.set_xscale("log")
        ax.set(xlabel=p, ylabel="value")
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    fig.suptitle("Slices (colour: trial number, later darker)")
    return fig


def parameter_importance(data: StudyData) -> pd.Series | None:
    """fANOVA importance of each searched parameter (Optuna's evaluator on the completed
    trials); ``None`` without Optuna or with fewer than 4 completed trials."""
    from llmbo import _imports

    frame = _param_frame(data)
    if frame is None or len(frame) < 4 or not _imports.is_available("optuna"):
        return None
    import optuna

    params = [c for c in frame.columns if c not in ("trial", "value")]
    dists: dict[str, Any] = {}
    for p in params:
        v = frame[p]
        if pd.api.types.is_numeric_dtype(v) and v.nunique() > 1:
            lo, hi = float(v.min()), float(v.max())
            dists[p] = optuna.distributions.FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        elif v.nunique() > 1:
            dists[p] = optuna.distributions.CategoricalDistribution(sorted(map(str, v.unique())))
    if not dists:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if data.maximize else "minimize")
    for row in frame.itertuples(index=False):
        values = row._asdict()
        params_now = {
            p: (
                float(values[p])
                if isinstance(d, optuna.distributions.FloatDistribution)
                else str(values[p])
            )
            for p, d in dists.items()
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params_now, distributions=dists, value=float(values["value"])
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return pd.Series(optuna.importance.get_param_importances(study, evaluator=evaluator))


def importance_figure(data: StudyData) -> Figure | None:
    """Bar chart of :func:`parameter_importance`."""
    importance = parameter_importance(data)
    if importance is None or importance.empty:
        return None
    fig, ax = _figure(width=5.5, height=0.5 + 0.4 * len(importance))
    importance = importance.sort_values()
    ax.barh(importance.index, importance.to_numpy(), color="tab:blue")
    ax.set(xlabel="fANOVA importance (Optuna)", title="Parameter importance")
    return fig


def catalyst_figure(data: StudyData) -> Figure | None:
    """Training and validation loss per epoch of a catalyst run, with the mentor's
    restarts marked."""
    if not data.catalyst:
        return None
    epochs = pd.DataFrame([e for e in data.catalyst if e.get("kind") == "epoch"])
    if epochs.empty:
        return None
    fig, ax = _figure(width=7, height=3.6)
    ax.plot(epochs["epoch"], epochs["train_loss"], "-o", ms=3, label="training loss")
    ax.plot(epochs["epoch"], epochs["validation_loss"], "-o", ms=3, label="validation loss")
    for e in data.catalyst:
        if e.get("kind") == "restart":
            ax.axvline(e["epoch"] + 0.5, color="tab:red", ls="--", lw=1)
    if any(e.get("kind") == "restart" for e in data.catalyst):
        ax.plot([], [], color="tab:red", ls="--", label="mentor restart")
    ax.set(xlabel="epoch", ylabel="loss", title="Catalyst run")
    ax.legend(fontsize=8)
    return fig
