"""Self-contained HTML pages: a study's report and the benchmark report.

One file each, that opens offline: figures are embedded PNGs, the trial table sorts and
filters with a few lines of inline JavaScript, and nothing is fetched from elsewhere.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmbo.report import figures as F
from llmbo.report.data import StudyData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["benchmark_report_html", "figure_html", "study_report_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}
.facts{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.95rem}
.facts dt{color:#555}.facts dd{margin:0}
img.figure{max-width:100%;height:auto;display:block;margin:.5rem 0}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border-bottom:1px solid #e5e5e5;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f6f6f6;cursor:pointer;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.9rem}.controls{margin:.5rem 0;display:flex;gap:.6rem}
.scroll{max-height:32rem;overflow:auto;border:1px solid #eee}
"""

_SCRIPT = """
(function(){
  var errors=[];window.addEventListener('error',function(e){errors.push(String(e.message));
    document.body.dataset.errors=errors.join(' | ');});
  function cell(r,i){var c=r.children[i];return c?c.textContent:'';}
  document.querySelectorAll('table.sortable').forEach(function(t){
    var body=t.tBodies[0];
    t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
      var rows=Array.prototype.slice.call(body.rows),num=th.dataset.num==='1';
      var dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir===1?'asc':'desc';
      rows.sort(function(a,b){var x=cell(a,i),y=cell(b,i);
        if(num){x=parseFloat(x);y=parseFloat(y);x=isNaN(x)?-Infinity:x;y=isNaN(y)?-Infinity:y;
          return dir*(x-y);}return dir*x.localeCompare(y);});
      rows.forEach(function(r){body.appendChild(r);});});});});
  var box=document.getElementById('filter'),state=document.getElementById('state');
  function apply(){var q=box?box.value.toLowerCase():'',s=state?state.value:'';
    document.querySelectorAll('#trials tbody tr').forEach(function(r){
      var ok=(!q||r.textContent.toLowerCase().indexOf(q)>=0)&&(!s||r.dataset.state===s);
      r.style.display=ok?'':'none';});}
  if(box)box.addEventListener('input',apply);if(state)state.addEventListener('change',apply);
  window.addEventListener('load',function(){var imgs=document.querySelectorAll('img.figure'),ok=0;
    imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;});
    document.body.dataset.figures=imgs.length;document.body.dataset.figuresOk=ok;});
})();
"""


def figure_html(fig: Figure, alt: str, *, dpi: int = 100) -> str:
    """An ``<img>`` holding ``fig`` as an embedded PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _page(title: str, body: str) -> str:
    from llmbo import __version__

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"{body}<p class='note'>Written by llmbo {html.escape(__version__)} on {when}.</p>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, pd.Timestamp | datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _table(frame: pd.DataFrame, *, table_id: str = "", numeric: Sequence[str] = ()) -> str:
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(
        f'<th data-num="{1 if c in numeric else 0}">{html.escape(str(c))}</th>'
        for c in frame.columns
    )
    rows = []
    for rec in frame.itertuples(index=False):
        state = getattr(rec, "state", "")
        cells = "".join(
            f'<td class="num">{html.escape(_fmt(v))}</td>'
            if c in numeric
            else f"<td>{html.escape(_fmt(v))}</td>"
            for c, v in zip(frame.columns, rec, strict=True)
        )
        rows.append(f'<tr data-state="{html.escape(str(state))}">{cells}</tr>')
    return (
        f'<div class="scroll"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _facts(items: Sequence[tuple[str, str]]) -> str:
    inner = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f'<dl class="facts">{inner}</dl>'


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _figure_or_note(fig: Figure | None, alt: str, missing: str) -> str:
    if fig is None:
        return _note(missing)
    return figure_html(fig, alt)


def study_report_html(data: StudyData, *, map_method: str = "pca") -> str:
    """The HTML report of one study (see ``llmbo report``)."""
    trials = data.trials
    done = data.complete
    counts = trials["state"].value_counts().to_dict()
    facts = [
        ("study", data.name),
        (
            "kind",
            {
                "campaign": "Bayesian optimisation campaign",
                "search": "parameter search",
                "catalyst": "LLM catalyst run",
            }[data.kind],
        ),
        ("direction", "maximise" if data.maximize else "minimise"),
        ("trials", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"),
    ]
    surrogate = data.settings.get("surrogate", {}).get("name")
    if surrogate:
        acq = data.settings.get("acquisition", {})
        power = acq.get("outcome_power", 1.0)
        facts.append(("surrogate", f"{surrogate}; acquisition {acq.get('name', '?')}"
                      + ("" if power == 1 else f", outcome power {power:g}")))  # fmt: skip
    if not done.empty:
        best = done.loc[done["value"].idxmax() if data.maximize else done["value"].idxmin()]
        facts.append(
            (
                "best",
                f"{best['value']:.6g} (trial {best['trial']}): {best['text'] or best['candidate_id']}",
            )
        )
    if data.pool_values is not None:
        pool_best = data.pool_values.max() if data.maximize else data.pool_values.min()
        facts.append(
            ("pool", f"{len(data.pool_values)} candidates with known values; best {pool_best:.6g}")
        )
    parts = [f"<h1>llmbo report: {html.escape(data.name)}</h1>", _facts(facts)]
    parts.append(
        _section(
            "Progress",
            _figure_or_note(
                F.progress_figure(data), "best value so far per trial", "No completed trials yet."
            ),
            ""
            if data.pool_values is not None
            else _note(
                "The pool's values are not all known, so random search's expectation and the "
                "top-5 % count are not drawn (give the table's target column: --target COL)."
            ),
        )
    )
    if data.kind != "catalyst":
        coverage = F.interval_coverage(data)
        parts.append(
            _section(
                "Calibration",
                _figure_or_note(
                    F.calibration_figure(data),
                    "predicted against measured values",
                    "No predictions were recorded: suggestions so far were random "
                    "(too few observations) or made by a proposer without a model.",
                ),
                ""
                if coverage is None
                else _note(
                    f"{coverage:.0%} of {len(data.predictions)} measured values lie inside the "
                    "95 % interval the model predicted when it suggested them (about 95 % for a "
                    "calibrated model)."
                ),
            )
        )
        parts.append(
            _section(
                "Feature map",
                _figure_or_note(
                    F.feature_map_figure(data, map_method),
                    "candidate features in two dimensions",
                    "No feature maps were recorded (no model was fitted yet).",
                ),
                _note(
                    f"First two {map_method.upper()} components of the recorded features "
                    "(principal components of at most 2,000 candidates: every measured one, "
                    "the rest sampled)."
                ),
            )
        )
    if data.kind == "search":
        importance = F.parameter_importance(data)
        table = ""
        if importance is not None:
            frame = importance.rename("importance").rename_axis("parameter").reset_index()
            table = _table(frame, numeric=("importance",))
        parts.append(
            _section(
                "Parameters",
                _figure_or_note(
                    F.parallel_coordinates_figure(data),
                    "parallel coordinates",
                    "No completed trials.",
                ),
                _figure_or_note(
                    F.slice_figure(data), "value against each parameter", "No completed trials."
                ),
                _figure_or_note(
                    F.importance_figure(data),
                    "parameter importance",
                    "Parameter importance needs Optuna and at least 4 completed trials.",
                ),
                table,
            )
        )
    if data.kind == "catalyst":
        parts.append(_catalyst_section(data))
    parts.append(_trials_section(trials))
    return _page(f"llmbo report: {data.name}", "".join(parts))


def _catalyst_section(data: StudyData) -> str:
    events = data.catalyst or []
    rows = []
    for e in events:
        kind = e.get("kind")
        if kind == "mentor":
            for p in e.get("proposals") or []:
                rows.append({"epoch": e.get("epoch"), "event": "proposal", "text": p})
            for r in e.get("rejected") or []:
                text = r if isinstance(r, str) else f"{r.get('line', r)} ({r.get('reason', '')})"
                rows.append({"epoch": e.get("epoch"), "event": "rejected", "text": text})
            if e.get("error"):
                rows.append({"epoch": e.get("epoch"), "event": "mentor error", "text": e["error"]})
        elif kind == "restart":
            rows.append(
                {"epoch": e.get("epoch"), "event": "restart from", "text": e.get("prompt", "")}
            )
        elif kind == "no_restart":
            rows.append(
                {"epoch": e.get("epoch"), "event": "no restart", "text": e.get("reason", "")}
            )
    proposals = _table(pd.DataFrame(rows, columns=["epoch", "event", "text"]), numeric=("epoch",))
    return _section(
        "Catalyst: losses and the mentor",
        _figure_or_note(F.catalyst_figure(data), "loss per epoch", "No epochs recorded yet."),
        proposals if rows else _note("The mentor made no proposals (gradient-only run)."),
    )


def _trials_section(trials: pd.DataFrame) -> str:
    states = sorted(trials["state"].unique()) if len(trials) else []
    options = "".join(f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in states)
    controls = (
        '<div class="controls"><input id="filter" type="search" placeholder="filter trials…">'
        f'<select id="state"><option value="">every state</option>{options}</select></div>'
    )
    shown = trials.copy()
    return _section(
        "Trials",
        controls,
        _table(shown, table_id="trials", numeric=("trial", "value")),
        _note("Click a column to sort; type to filter."),
    )


def benchmark_report_html(results: pd.DataFrame, curves: pd.DataFrame) -> str:
    """The benchmark report: the table of methods, convergence curves with bands, and one
    table per pool (methods by coverage)."""
    from llmbo.benchmarks.report import convergence_figure, describe_runs, summarize

    summary = summarize(results)
    parts = ["<h1>llmbo benchmarks: top-5 % coverage</h1>"]
    if summary.empty:
        return _page("llmbo benchmarks", "".join([*parts, _note("No benchmark results yet.")]))
    registered = summarize(_registered_runs(results))
    if not registered.empty:
        wide = registered.pivot_table(
            index="label", columns="benchmark", values="coverage_mean", sort=False
        )
        wide = wide.reset_index().rename(columns={"label": "method"})
        parts.append(
            _section(
                "Presets and peers",
                _note(
                    "Mean top-5 % coverage over seeds (the benchmark protocol: 10 starts from "
                    "the worse half of the pool, then 50 sequential BO iterations) of the "
                    "registered presets and peer tools with their own settings; text presets "
                    "on each pool's default template with the packaged MiniLM. Every other "
                    "run is in the per-pool tables below."
                ),
                _table(wide.round(3), numeric=[c for c in wide.columns if c != "method"]),
            )
        )
    main_curves = _registered_runs(curves)
    if not main_curves.empty:
        fig = convergence_figure(main_curves)
        parts.append(
            _section("Convergence (mean ± s.e. over seeds)", figure_html(fig, "convergence"))
        )
    for pool in dict.fromkeys(summary["benchmark"]):
        part = summary[summary["benchmark"] == pool].sort_values("coverage_mean", ascending=False)
        frame = part[
            ["label", "n", "coverage_mean", "coverage_sem", "best_found_mean", "seconds_mean"]
        ]
        frame = frame.rename(columns={"label": "method", "n": "seeds"}).round(4)
        parts.append(_section(f"Pool {pool}", _table(frame, numeric=list(frame.columns[1:]))))
    parts.append(
        _section("How the runs were made", f"<pre>{html.escape(describe_runs(results))}</pre>")
    )
    return _page("llmbo benchmarks", "".join(parts))


def _registered_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the product presets and peers as registered (no overrides): for methods that
    read texts, on each pool's default template with the packaged MiniLM; relabelled so
    each method is one line."""
    from llmbo.benchmarks.methods import METHODS
    from llmbo.benchmarks.selection import PEERS
    from llmbo.datasets import POOLS, load_pool
    from llmbo.presets import product_presets

    if frame.empty:
        return frame
    wanted = set(product_presets()) | set(PEERS)
    defaults = {p: load_pool(p).default_template for p in frame["benchmark"].unique() if p in POOLS}
    uses_model = frame["method"].map(lambda m: m in METHODS and METHODS.get(m).uses_model)
    template = (
        frame["template"] if "template" in frame.columns else frame["benchmark"].map(defaults)
    )
    on_default = template == frame["benchmark"].map(defaults)
    model = frame["model"].fillna("").astype(str) if "model" in frame.columns else "minilm"
    keep = frame["method"].isin(wanted) & (~uses_model | (on_default & (model == "minilm")))
    if "iterations" in frame.columns:
        keep &= frame["iterations"] == 50
    out = frame[keep].copy()
    out["template"] = ""
    out["model"] = ""
    return out


def write_html(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` atomically."""
    from llmbo._files import write_text_atomic

    path = Path(path)
    write_text_atomic(path, text)
    return path
