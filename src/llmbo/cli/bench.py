"""``llmbo bench``, ``bench-report`` and ``bench-merge``: the pool benchmarks from the CLI."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from llmbo.cli.common import add_command
from llmbo.errors import InputError

REPORT_MD = "reactions.md"
REPORT_HTML = "reactions.html"
REPORT_PNG = "reactions_convergence.png"

_BENCH_DESCRIPTION = (
    "Run the benchmark protocol (10 starts from the worse half of the pool: below the "
    "median, or above it on a pool that is minimised such as freesolv; then N sequential "
    "iterations) for every benchmark x method x seed not yet in "
    "RESULTS_DIR/reactions.csv, then write reactions.md and "
    "reactions_convergence.png there and print the table. Methods that read reaction "
    "components are skipped on the molecule pools (esol, freesolv), with a warning."
)
_MERGE_DESCRIPTION = (
    "Merge reactions.csv and reactions_curves.csv of SOURCE directories (e.g. "
    "written by parallel 'llmbo bench --results-dir' processes) into RESULTS_DIR. Runs "
    "already in RESULTS_DIR are kept as measured; each file is replaced atomically. No "
    "'llmbo bench' may write to RESULTS_DIR meanwhile. Then rewrite the report."
)


def register(subparsers: Any) -> None:
    """Add ``bench``, ``bench-report`` and ``bench-merge`` to the ``llmbo`` parser."""
    _register_bench(subparsers)
    _register_report(subparsers)
    _register_merge(subparsers)


def _register_bench(subparsers: Any) -> None:
    summary = "run the pool benchmarks (resumable) and report top-5 %% coverage"
    p = add_command(subparsers, "bench", summary, _BENCH_DESCRIPTION)
    p.add_argument(
        "--benchmarks",
        default=None,
        help="comma-separated pools (bh1..bh5, suzuki; the molecule pools esol, freesolv) "
        "or 'all' (= bh1..bh5); default all",
    )
    p.add_argument(
        "--methods", default="all", help="comma-separated methods or 'all'; see --list-methods"
    )
    p.add_argument("--seeds", default=None, help="seeds, e.g. '0-9' or '0,3,5-7'; default 0-9")
    p.add_argument(
        "--template",
        default=None,
        help="text template: procedure, names or reaction on reaction pools, smiles or names "
        "on molecule pools (default: each pool's own, names or smiles)",
    )
    p.add_argument("--iterations", type=int, default=None, help="BO iterations (default 50)")
    p.add_argument(
        "--model",
        default="minilm",
        help="transformer of the LLM methods (default: the packaged MiniLM)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA if present)")
    p.add_argument(
        "--results-dir",
        default="benchmarks/results",
        type=Path,
        help="where reactions.csv and the report go (default benchmarks/results)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="[METHOD:]KEY=VALUE",
        help="override a surrogate setting, e.g. deep_kernel.steps=50 or "
        "lora:encoder.pooling=cls, or the acquisition (acquisition=ts; logei, ucb or ts; "
        "acquisition.beta=0.5 for UCB's weight, acquisition.outcome_power=2 to fit the model "
        "to squared scaled values); "
        "without METHOD: applies to every LLM method. "
        "Overridden runs are labelled method{key=value} in the results.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI mode: bh1, seeds 0-1, 5 iterations (explicit options still win)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write reactions.md / .png")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is fastest for these "
        "small GPs on a busy machine",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    p.set_defaults(func=_bench)


def _register_report(subparsers: Any) -> None:
    r = add_command(
        subparsers,
        "bench-report",
        "regenerate reactions.md and the convergence plot from the CSVs",
        "Rebuild RESULTS_DIR/reactions.md, reactions.html (one page that opens offline), "
        "presets.md and reactions_convergence.png from "
        "reactions.csv and reactions_curves.csv, and print the table.",
    )
    r.add_argument("--results-dir", default="benchmarks/results", type=Path)
    r.set_defaults(func=_report)


def _register_merge(subparsers: Any) -> None:
    summary = "add the runs of other results directories to RESULTS_DIR"
    m = add_command(subparsers, "bench-merge", summary, _MERGE_DESCRIPTION)
    m.add_argument("sources", nargs="+", type=Path, metavar="SOURCE")
    m.add_argument("--results-dir", default="benchmarks/results", type=Path)
    m.add_argument("--no-report", action="store_true", help="do not write reactions.md / .png")
    m.set_defaults(func=_merge)


# ------------------------------------------------------------------- parsing
def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9; ``"0,3,5-7"`` -> [0, 3, 5, 6, 7] (order kept, duplicates dropped)."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise InputError(f"Bad seed list {text!r}: use e.g. '0-9' or '0,3,5-7'.")
        lo = int(match[1])
        seeds.extend(range(lo, int(match[2] or lo) + 1))
    if not seeds:
        raise InputError(f"Bad seed list {text!r}: need at least one seed.")
    return list(dict.fromkeys(seeds))


def _names(text: str, all_names: tuple[str, ...] | list[str], registry: Any) -> list[str]:
    if text.strip().lower() == "all":
        return list(all_names)
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"Empty list {text!r}.")
    for n in names:
        registry.get(n)  # raises InputError listing the choices
    return list(dict.fromkeys(names))


def parse_settings(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``["deep_kernel.steps=5", "drfp:featurizer.n_bits=1024"]`` -> per-method overrides."""
    from llmbo.benchmarks.methods import METHODS
    from llmbo.surrogates.config import parse_setting

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = parse_setting(item)
        target, _, path = key.rpartition(":")
        if not path:
            raise InputError(f"--set {item!r} names no setting.")
        if target:
            METHODS.get(target)
            chosen = [target.lower()]
        else:
            chosen = [m for m in methods if METHODS.get(m).uses_model]
        for m in chosen:
            out.setdefault(m, {})[path] = value
    return out


# ------------------------------------------------------------------ commands
def _bench(args: argparse.Namespace) -> int:
    from llmbo.benchmarks.methods import ANY_POOL, DEFAULT_METHODS, METHODS
    from llmbo.benchmarks.protocol import ProtocolConfig
    from llmbo.benchmarks.runner import QUICK, run_benchmarks
    from llmbo.datasets import BH_POOL_NAMES, POOLS

    if args.list_methods:
        for name in METHODS.names():
            m = METHODS.get(name)
            flag = "" if m.default else "  (variant; not in 'all')"
            if m.pool_kinds != ANY_POOL:
                flag += f"  ({' and '.join(sorted(m.pool_kinds))} pools only)"
            print(f"{name:18s} {m.description}{flag}")
        return 0
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}.")
        import torch

        torch.set_num_threads(args.threads)
    benchmarks = args.benchmarks or (",".join(QUICK["benchmarks"]) if args.quick else "all")
    seeds = args.seeds or ("0-1" if args.quick else "0-9")
    iterations = (
        args.iterations
        if args.iterations is not None
        else (QUICK["iterations"] if args.quick else 50)
    )
    pools = _names(benchmarks, BH_POOL_NAMES, POOLS)
    methods = _names(args.methods, DEFAULT_METHODS, METHODS)
    settings = parse_settings(args.settings, methods)
    protocol = ProtocolConfig(iterations=iterations)
    run_benchmarks(
        pools,
        methods,
        parse_seeds(seeds),
        template=args.template,
        protocol=protocol,
        model=args.model,
        device=args.device,
        results_dir=args.results_dir,
        options=settings,
        progress=not args.no_progress,
    )
    if args.no_report:
        return 0
    return _write_report(args.results_dir)


def _report(args: argparse.Namespace) -> int:
    if not (args.results_dir / "reactions.csv").exists():
        raise InputError(f"No reactions.csv in {args.results_dir}; run 'llmbo bench' first.")
    return _write_report(args.results_dir)


def _merge(args: argparse.Namespace) -> int:
    from llmbo.benchmarks.merge import merge_results

    summary = merge_results(args.sources, args.results_dir)
    for source, added in summary.added.items():
        line = f"{source}: {added} run(s) added"
        present = summary.already_present[source]
        if present:
            line += (
                f", {present} already present (in {args.results_dir} or an earlier source) "
                "and left out"
            )
            if summary.differing[source]:
                line += f" ({summary.differing[source]} with another outcome than the kept row)"
        print(line)
    print(f"{summary.curves_added} curve row(s) added.")
    if summary.runs_without_curve:
        print(f"{summary.runs_without_curve} added run(s) have no curve in their source.")
    if args.no_report or not summary.total_added:
        return 0
    return _write_report(args.results_dir)


def _write_report(results_dir: Path) -> int:
    from llmbo.benchmarks.report import (
        convergence_figure,
        describe_runs,
        figure_methods,
        load_curves,
        load_results,
        markdown_table,
    )

    results = load_results(results_dir)
    table = markdown_table(results)
    text = (
        "# Benchmarks: top-5 % coverage\n\n"
        "Mean ± standard error over seeds of the share of the pool's top-5 % candidates "
        "found (10 starts from the worse half of the pool, sequential BO; on a minimised pool, "
        "such as freesolv, the top 5 % are the lowest values; see DESIGN.md, 'Benchmark "
        "protocol'). Generated by `llmbo bench-report` from `reactions.csv`.\n\n"
        f"{table}\n{describe_runs(results)}"
    )
    (results_dir / REPORT_MD).write_text(text, encoding="utf-8")
    curves = load_curves(results_dir)
    if not curves.empty:
        methods, title = figure_methods(curves)
        fig = convergence_figure(curves, methods=methods)
        if title:
            fig.suptitle(title)
        fig.savefig(results_dir / REPORT_PNG, dpi=120)
    _write_presets(results_dir, results)
    from llmbo.report import benchmark_report_html, write_html

    write_html(benchmark_report_html(results, curves), results_dir / REPORT_HTML)
    print(table, end="")
    sys.stdout.flush()
    return 0


#: The all-pool table of the presets, written next to reactions.md.
PRESETS_MD = "presets.md"


def _write_presets(results_dir: Path, results: Any) -> None:
    """Write ``presets.md``: every preset on every pool and the rule's choice
    (:mod:`llmbo.benchmarks.selection`), with seconds per suggestion from ``speed.csv``."""
    import pandas as pd

    from llmbo.benchmarks.selection import preset_table
    from llmbo.presets import DEFAULT_PRESET

    speed_file = results_dir / "speed.csv"
    speed = pd.read_csv(speed_file) if speed_file.exists() else None
    table, selection = preset_table(results, speed, DEFAULT_PRESET)
    default_note = (
        f"The library default is **{DEFAULT_PRESET}**"
        + ("" if selection.chosen == DEFAULT_PRESET else f"; the rule chose {selection.chosen}")
        + "."
    )
    text = (
        "# Presets on every pool: the table behind the default\n\n"
        "Top-5 % coverage after 50 iterations, mean ± s.e. over seeds 0–9 (the benchmark "
        "protocol; text presets on each pool's default template: names on reaction pools, "
        "smiles on molecule pools; the packaged MiniLM). Mean rank over the pools among the "
        "presets that run on all of them and take at most 5 s per suggestion at 60 "
        "observations on bh1 (`benchmarks/speed.py`); the rule is in benchmarks/README.md. "
        "— marks a preset that does not apply to a pool (it reads reaction components) or "
        f"was not run. Generated by `llmbo bench-report`.\n\n{default_note}\n\n{table}"
    )
    (results_dir / PRESETS_MD).write_text(text, encoding="utf-8")
