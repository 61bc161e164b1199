"""Run the benchmark protocol and append results to CSV files, resumably.

One *run* is (pool, method, seed): tell the protocol's 10 starts from the worse half of the
pool, then ask for ``iterations`` sequential suggestions from an
:class:`~llmbo.optimizer.Optimizer` scored by a :class:`~llmbo.optimizer.TableObjective`,
in the pool's direction (:attr:`~llmbo.datasets.CandidatePool.maximize`: reaction yields and
ESOL are maximised, FreeSolv is minimised; the starts, the best so far and the top-5 %
coverage follow it). A peer method (``tpe``, ``baybe``) runs its own proposer through the
same protocol and starts; a proposal outside the pool's available rows is not an experiment
and is counted in the row's ``misses``. :func:`run_benchmarks` builds each surrogate (or
proposer) once per (pool, method) and shares it across seeds, so a transformer is loaded,
the pool tokenised and the frozen layers cached once, not once per seed. A method that does not apply to a pool (one that
reads reaction components, on a molecule pool) is skipped with a warning.

Each finished run is appended at once to ``reactions.csv`` (one row) and
``reactions_curves.csv`` (its best-so-far curve); a run already in the CSV is skipped.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmbo.benchmarks.methods import METHODS, method_label
from llmbo.benchmarks.protocol import ProtocolConfig
from llmbo.design import initial_design
from llmbo.errors import InputError
from llmbo.metrics import best_so_far, iteration_of_max, top_fraction_coverage

if TYPE_CHECKING:
    from llmbo.acquisition import AcquisitionConfig
    from llmbo.datasets import CandidatePool
    from llmbo.optimizer import Optimizer
    from llmbo.proposers.base import Proposer
    from llmbo.space import CandidateSpace
    from llmbo.surrogates.base import Surrogate
    from llmbo.surrogates.config import SurrogateConfig

logger = logging.getLogger("llmbo.benchmarks")

__all__ = [
    "CURVE_COLUMNS",
    "QUICK",
    "RECORDED_LIBRARIES",
    "RESULT_COLUMNS",
    "RunResult",
    "build_proposer",
    "build_surrogate",
    "library_versions",
    "read_csv_rows",
    "require_result_columns",
    "row_keys",
    "run_benchmarks",
    "run_one",
]

RESULTS_FILE = "reactions.csv"
CURVES_FILE = "reactions_curves.csv"

#: Columns of ``reactions.csv``, in order. ``best_found`` and ``pool_max`` are the best
#: values in the pool's direction: the smallest ones on a minimised pool. ``misses``: how
#: many proposals of a peer method were not available pool rows (not experiments, not
#: counted in ``n_evaluated``; always 0 for the Bayesian methods).
RESULT_COLUMNS: tuple[str, ...] = (
    "benchmark",
    "method",
    "seed",
    "iterations",
    "top5_coverage",
    "best_found",
    "pool_max",
    "iteration_of_max",
    "n_evaluated",
    "n_initial",
    "batch_size",
    "fit_fallbacks",
    "misses",
    "template",
    "model",
    "device",
    "options",
    "seconds",
    "date",
    "llmbo_version",
    "torch_version",
    "hostname",
    "hardware",
    "git_commit",
    "library_versions",
)
#: Libraries whose versions each row records (``library_versions``): the numerics of a run
#: depend on them, and a BO campaign amplifies any difference into other picks.
RECORDED_LIBRARIES: tuple[str, ...] = (
    "transformers",
    "tokenizers",
    "peft",
    "gpytorch",
    "linear_operator",
    "botorch",
    "scipy",
    "numpy",
)
#: Columns of ``reactions_curves.csv``: best-so-far after each iteration (0 = the starts).
CURVE_COLUMNS: tuple[str, ...] = (
    "benchmark",
    "method",
    "seed",
    "iterations",
    "template",
    "model",
    "iteration",
    "best_so_far",
)
#: A run is identified by these columns; a run already in the CSV is not repeated.
RUN_KEY: tuple[str, ...] = (
    "benchmark",
    "method",
    "seed",
    "iterations",
    "template",
    "model",
    "n_initial",
    "batch_size",
)
#: Columns every results file has; a file without them is not an llmbo results file.
REQUIRED_COLUMNS: tuple[str, ...] = ("benchmark", "method", "seed")
#: The ``--quick`` protocol (CI): one pool, two seeds, five iterations.
QUICK: dict[str, Any] = {"benchmarks": ("bh1",), "seeds": (0, 1), "iterations": 5}


@dataclass
class RunResult:
    """Outcome of one benchmark run.

    Attributes:
        row: One row of ``reactions.csv`` (keys: :data:`RESULT_COLUMNS`).
        curve: Best value (in the pool's direction) after the starts (index 0) and after
            each iteration, shape ``iterations + 1``.
        evaluated_ids: Candidate ids in evaluation order (starts first).
        evaluated_values: Their measured values, same order.
    """

    row: dict[str, Any]
    curve: np.ndarray
    evaluated_ids: list[str] = field(default_factory=list)
    evaluated_values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def curve_rows(self) -> list[dict[str, Any]]:
        base = {k: self.row[k] for k in CURVE_COLUMNS if k in self.row}
        return [{**base, "iteration": i, "best_so_far": float(v)} for i, v in enumerate(self.curve)]


# ------------------------------------------------------------------ environment
@functools.cache
def _environment() -> dict[str, str]:
    import torch

    from llmbo import __version__

    return {
        "llmbo_version": __version__,
        "torch_version": torch.__version__,
        "hostname": platform.node(),
        "git_commit": _git_commit(),
        "library_versions": library_versions(),
    }


def library_versions(names: Sequence[str] = RECORDED_LIBRARIES) -> str:
    """``"name=version;..."`` for the installed distributions among ``names``."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            continue
    return ";".join(found)


def _git_commit() -> str:
    """Short commit of the llmbo checkout (``+dirty`` with local changes); ``""`` if none.
    ``LLMBO_GIT_COMMIT`` names it where the code runs outside a checkout (a copied tree)."""
    if os.environ.get("LLMBO_GIT_COMMIT"):
        return os.environ["LLMBO_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}+dirty" if dirty else head


@functools.cache
def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo where available)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_instruction_set() -> str:
    """The vector instruction set torch dispatches CPU kernels to (``"AVX2"``, ``"AVX512"``...).

    It changes float rounding, and a BO campaign turns that into other picks: single runs
    repeat exactly only on the same instruction set, so every CSV that names the CPU names it.
    This is torch's own dispatch level; MKL and oneDNN choose theirs separately
    (``MKL_ENABLE_INSTRUCTIONS``, ``DNNL_MAX_CPU_ISA``), which it does not show.
    """
    import torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_description() -> str:
    """The CPU model and torch's instruction set, e.g. ``"AMD EPYC (AVX512)"``."""
    return f"{cpu_name()} ({cpu_instruction_set()})"


def _hardware(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CUDA)"
    return (
        f"{cpu_name()} ({os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"{cpu_instruction_set()})"
    )


# ---------------------------------------------------------------------- pools
@functools.lru_cache(maxsize=8)
def _pool(name: str) -> CandidatePool:
    from llmbo.datasets import load_pool

    return load_pool(name)


@functools.lru_cache(maxsize=16)
def _space(name: str, template: str) -> CandidateSpace:
    return _pool(name).space(template)


def _template(pool: CandidatePool, template: str | None) -> str:
    """The template a run on ``pool`` uses: ``template``, or the pool's default."""
    chosen = pool.default_template if template is None else template
    if chosen not in pool.templates:
        raise InputError(
            f"Pool {pool.name!r} has no template {chosen!r}; choose one of "
            f"{sorted(pool.templates)} (or name none: each pool then uses its default)."
        )
    return chosen


# ------------------------------------------------------------------ one run
def build_surrogate(
    pool: str | CandidatePool,
    method: str,
    *,
    template: str | None = None,
    model: str = "minilm",
    device: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Surrogate:
    """A fresh surrogate for ``method`` on ``pool`` (share it across seeds of that pool).

    ``template``: the pool's text template (default: the pool's own default).

    Raises:
        InputError: The method does not apply to the pool (e.g. ``drfp`` on a molecule pool).
    """
    from llmbo.surrogates.base import Surrogate
    from llmbo.surrogates.factory import make_surrogate

    pool_obj = _applicable_pool(pool, method)
    spec_method = METHODS.get(method)
    made: SurrogateConfig | Surrogate = spec_method(
        pool_obj, model, device, _template(pool_obj, template), options
    )
    return made if isinstance(made, Surrogate) else make_surrogate(made)


def build_proposer(pool: str | CandidatePool, method: str) -> Proposer:
    """The proposer of peer ``method`` on ``pool`` (share it across seeds of that pool).

    Raises:
        InputError: The method has no proposer of its own, or does not apply to the pool
            (e.g. ``tpe`` on a molecule pool, ``baybe`` without BayBE installed).
    """
    pool_obj = _applicable_pool(pool, method)
    builder = METHODS.get(method).proposer
    if builder is None:
        raise InputError(f"Method {method!r} has no proposer of its own; use build_surrogate.")
    return builder(pool_obj)


def _applicable_pool(pool: str | CandidatePool, method: str) -> CandidatePool:
    """``pool`` (loaded by name) after checking that ``method`` applies to it."""
    pool_obj = _pool(pool) if isinstance(pool, str) else pool
    reason = METHODS.get(method).skip_reason(pool_obj)
    if reason is not None:
        raise InputError(reason)
    return pool_obj


def _check_options(method: str, options: Mapping[str, Any] | None) -> None:
    """A peer method takes no surrogate or acquisition settings."""
    if options and METHODS.get(method).proposer is not None:
        raise InputError(
            f"Method {method!r} runs its own proposer and takes no settings; got {sorted(options)}."
        )


def _reset(surrogate: Surrogate) -> None:
    """Forget what a shared surrogate learned in an earlier seed."""
    surrogate.reset()


def _device_of(surrogate: Surrogate) -> str:
    encoder = getattr(surrogate, "encoder", None)
    if encoder is not None and hasattr(encoder, "device"):
        return str(encoder.device)
    featurizer = getattr(surrogate, "featurizer", None)
    config = getattr(featurizer, "config", None)
    if config is not None and getattr(config, "device", None):
        return str(config.device)
    return "cpu"


def run_one(
    pool_name: str,
    method: str,
    seed: int,
    *,
    template: str | None = None,
    protocol: ProtocolConfig | None = None,
    model: str = "minilm",
    device: str | None = None,
    surrogate: Surrogate | None = None,
    options: Mapping[str, Any] | None = None,
    proposer: Proposer | None = None,
) -> RunResult:
    """Run the benchmark protocol once and measure it.

    Args:
        pool_name: A registered pool (:data:`~llmbo.datasets.POOL_NAMES`).
        method: A registered benchmark method (:data:`~llmbo.benchmarks.methods.METHODS`).
        seed: Seed of the initial design and of the optimizer.
        template: Text template of the pool (``"procedure"``, ``"names"``, ``"smiles"``...;
            default: the pool's default template).
        protocol: Run settings (default: 10 starts, 50 iterations, batch 1, in the pool's
            direction).
        model: Transformer of LLM methods.
        device: Where the transformer runs (``None``: CUDA when available).
        surrogate: A surrogate built by :func:`build_surrogate` for this pool, method,
            template and model, to share its prepared state across seeds. Built here if
            omitted.
        options: Spec overrides (dotted paths) on top of the method's own.
        proposer: A peer method's proposer built by :func:`build_proposer` for this pool,
            to share across seeds. Built here if omitted (peer methods only).

    Returns:
        The run's CSV row, best-so-far curve and evaluated candidates.
    """
    spec_method = METHODS.get(method)
    pool = _pool(pool_name)
    protocol = (protocol or ProtocolConfig()).for_pool(pool)
    template = _template(pool, template)
    space = _space(pool_name, template)
    values = pool.values
    _check_options(method, options)
    start = time.perf_counter()
    if spec_method.proposer is not None:
        proposer = build_proposer(pool, method) if proposer is None else proposer
        surrogate = None
    elif surrogate is None:
        surrogate = build_surrogate(
            pool, method, template=template, model=model, device=device, options=options
        )
    if surrogate is not None:
        _reset(surrogate)
    chooser = surrogate if surrogate is not None else proposer
    assert chooser is not None
    acquisition = spec_method.acquisition_for(options, pool, template)
    optimizer, counts = _campaign(space, pool, chooser, acquisition, int(seed), protocol)
    seconds = time.perf_counter() - start

    history = optimizer.history
    done = history[history["state"] == "complete"].sort_values("trial")
    ids = done["candidate_id"].astype(str).tolist()
    evaluated = done["value"].to_numpy(dtype=np.float64)
    if len(ids) != protocol.budget:
        raise RuntimeError(f"Run evaluated {len(ids)} candidates, expected {protocol.budget}.")
    curve, scores = _scores(evaluated, values, protocol)
    used_device = "cpu" if surrogate is None else _device_of(surrogate)
    fallbacks = 0 if surrogate is None or surrogate.name == "random" else counts["fallbacks"]
    row: dict[str, Any] = {
        "benchmark": pool_name,
        "method": method_label(method, options),
        "seed": int(seed),
        "iterations": protocol.iterations,
        **scores,
        "n_evaluated": len(ids),
        "n_initial": protocol.n_initial,
        "batch_size": protocol.batch_size,
        "fit_fallbacks": fallbacks,
        "misses": counts["misses"],
        "template": template,
        "model": model if spec_method.uses_model else "",
        "device": used_device,
        "options": json.dumps(dict(options), sort_keys=True) if options else "",
        "seconds": round(seconds, 3),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **_environment(),
        "hardware": _hardware(used_device),
    }
    return RunResult(row=row, curve=curve, evaluated_ids=ids, evaluated_values=evaluated)


def _campaign(
    space: CandidateSpace,
    pool: CandidatePool,
    model: Surrogate | Proposer,
    acquisition: AcquisitionConfig,
    seed: int,
    protocol: ProtocolConfig,
) -> tuple[Optimizer, dict[str, int]]:
    """Tell the protocol's starts and run its iterations (``protocol.maximize`` set) with a
    surrogate (the Bayesian proposer) or a peer's proposer: the optimizer and the counts
    of fits that fell back to the surrogate's fallback model (``"fallbacks"``) and of
    proposals that were not available pool rows (``"misses"``)."""
    from llmbo.optimizer import Optimizer, TableObjective
    from llmbo.proposers.base import Proposer

    values = pool.values
    maximize = _maximize(protocol)
    if isinstance(model, Proposer):
        optimizer = Optimizer(space, maximize=maximize, seed=seed, progress=False, proposer=model)
    else:
        optimizer = Optimizer(
            space,
            model,
            acquisition=acquisition,
            maximize=maximize,
            seed=seed,
            progress=False,
        )
    starts = initial_design(values, protocol.n_initial, seed, maximize=maximize)
    optimizer.tell([space.ids[i] for i in starts], values[starts].tolist())
    counts = {"fallbacks": 0, "misses": 0}

    def count(opt: Optimizer, ids: list[str], vals: list[float]) -> None:
        if opt.last_fit.get("fallback") is not None:
            counts["fallbacks"] += 1
        counts["misses"] += int(opt.last_fit.get("misses", 0))

    optimizer.run(
        TableObjective(space, pool.target),
        protocol.iterations,
        batch_size=protocol.batch_size,
        callback=count,
    )
    return optimizer, counts


def _maximize(protocol: ProtocolConfig) -> bool:
    """The direction of a protocol resolved for its pool (:meth:`ProtocolConfig.for_pool`)."""
    if protocol.maximize is None:
        raise ValueError("The protocol's direction is not set; call ProtocolConfig.for_pool.")
    return protocol.maximize


def _scores(
    evaluated: np.ndarray, values: np.ndarray, protocol: ProtocolConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """The best-so-far curve (after the starts and after each iteration) and the run's
    scores against the pool: top-5 % coverage, best found, pool best, iteration of max.

    Everything is measured in the direction ``protocol.maximize`` (set): when minimising,
    the curve is the running minimum, the pool's best is its minimum and the top 5 % are
    its lowest values.
    """
    maximize = _maximize(protocol)
    running = best_so_far(evaluated, maximize=maximize)
    curve = running[protocol.n_initial - 1 :: protocol.batch_size]
    pool_best = float(np.max(values) if maximize else np.min(values))
    hit = iteration_of_max(
        evaluated,
        pool_best,
        protocol.n_initial,
        batch_size=protocol.batch_size,
        maximize=maximize,
    )
    scores = {
        "top5_coverage": top_fraction_coverage(evaluated, values, 0.05, maximize=maximize),
        "best_found": float(curve[-1]),
        "pool_max": pool_best,
        "iteration_of_max": "" if hit is None else int(hit),
    }
    return curve, scores


# --------------------------------------------------------------------- CSV I/O
def read_csv_rows(path: str | Path) -> pd.DataFrame:
    """Read a results CSV, ignoring a trailing partial line left by a crash.

    Every column is read as text (missing file: empty frame); numeric columns are
    converted by the caller.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame()
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # drop the partial line
    if not text.strip():
        return pd.DataFrame()
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


class _CsvAppender:
    """Append rows to a CSV one durable line at a time (write + flush + fsync)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        existing = self._header()
        if existing is None:
            self.columns = list(columns)
            self._write([self.columns])
        else:
            require_result_columns(existing, path)
            self.columns = existing
            extra = [c for c in columns if c not in existing]
            if extra:
                logger.warning(
                    "%s lacks the newer column(s) %s; they are not written.", path, extra
                )

    def _repair(self) -> None:
        """Cut a partial last line (a crash mid-write) so the next row starts cleanly."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            logger.warning("Dropping a partial last line of %s (interrupted write).", self.path)
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())

    def _header(self) -> list[str] | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, encoding="utf-8", newline="") as fh:
            return next(csv.reader(fh), None)

    def _write(self, rows: Iterable[Sequence[Any]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            writer.writerow(["" if v is None else str(v).replace("\n", " ") for v in row])
        data = buf.getvalue().encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._write([[row.get(c, "") for c in self.columns] for row in rows])


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Each row's values in ``columns``, as text: the run keys of a results frame."""
    if frame.empty:
        return []
    return [tuple(str(v) for v in row) for row in frame[list(columns)].itertuples(index=False)]


def require_result_columns(columns: Sequence[str], path: Path, hint: str = "") -> None:
    """Raise :class:`InputError` unless ``columns`` has the :data:`REQUIRED_COLUMNS`."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path} is not an llmbo results file (no column(s) {', '.join(missing)}){hint}."
        )


def _key(values: Mapping[str, Any], present: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(values[c]) for c in present)


# ------------------------------------------------------------------- many runs
def run_benchmarks(
    pools: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    *,
    template: str | None = None,
    protocol: ProtocolConfig | None = None,
    model: str = "minilm",
    device: str | None = None,
    results_dir: str | Path = "benchmarks/results",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    on_result: Callable[[RunResult], None] | None = None,
) -> pd.DataFrame:
    """Run every (pool, method, seed) not yet in ``results_dir/reactions.csv``.

    Args:
        pools: The pools to run on (every combination with ``methods`` and ``seeds``).
        methods: The methods; one that does not apply to a pool
            (:meth:`~llmbo.benchmarks.methods.BenchmarkMethod.skip_reason`) is skipped
            there, with a warning.
        seeds: The seeds.
        template: The pools' text template (default: each pool's default template;
            ``"names"`` is the one every packaged pool has).
        options: Per-method spec overrides, ``{method: {"deep_kernel.steps": 50}}``; they
            become part of the method's label in the results.
        progress: Show a progress bar over runs (the optimizer's own bar stays off).
        on_result: Called with each finished run (after it is saved).

    Returns:
        The rows of ``reactions.csv`` for the requested runs (earlier ones included).
    """
    protocol = protocol or ProtocolConfig()
    options = options or {}
    for m in methods:  # unknown names, acquisitions and settings fail before anything runs
        METHODS.get(m).acquisition_for(options.get(m))
        _check_options(m, options.get(m))
    from llmbo.datasets import POOLS

    for p in pools:
        POOLS.get(p)
    # Templates and directions are checked before anything runs.
    templates = {p: _template(_pool(p), template) for p in pools}
    for p in pools:
        protocol.for_pool(_pool(p))
    applicable = _applicable(pools, methods)
    results_dir = Path(results_dir)
    results = _CsvAppender(results_dir / RESULTS_FILE, RESULT_COLUMNS)
    curves = _CsvAppender(results_dir / CURVES_FILE, CURVE_COLUMNS)
    existing = read_csv_rows(results.path)
    # Key columns an older file lacks are left out of the comparison.
    present = [c for c in RUN_KEY if c in results.columns]
    loose = _any_template(present)
    done = set(row_keys(existing, present))
    done |= {loose(k) for k in done}  # methods that read no texts: any template's run

    runs = _wanted_runs(applicable, seeds, options, present, protocol, templates, model)
    wanted = [key for _, key in runs]
    plan = [run for run, key in runs if key not in done]
    skipped = len(wanted) - len(plan)
    if skipped:
        logger.info("Skipping %d finished run(s) found in %s.", skipped, results.path)

    bar = None
    if progress and plan:
        from llmbo._progress import progress_bar

        bar = progress_bar(len(plan), "llmbo bench", unit="run", leave=True)
    try:
        build = {"model": model, "device": device}
        for result in _run_plan(plan, options, protocol, templates, build, bar):
            curves.append(result.curve_rows())  # curve first: a row means a complete run
            results.append([result.row])
            _log_run(result.row)
            if on_result is not None:
                on_result(result)
            if bar is not None:
                bar.set_postfix(coverage=f"{result.row['top5_coverage']:.2f}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    table = read_csv_rows(results.path)
    if table.empty:
        return table
    wanted_keys = set(wanted)
    keep, seen = [], set()
    for k in row_keys(table, present):
        match = k if k in wanted_keys else loose(k) if loose(k) in wanted_keys else None
        keep.append(match is not None and match not in seen)
        if match is not None and match != k:
            seen.add(match)  # one run per seed of a method that reads no texts
    return table.loc[keep].reset_index(drop=True)


#: The template entry of the run key of a method that reads no texts (random search, the
#: fixed-feature GPs, peers): its runs do not depend on the template, so any template's
#: run of it counts.
ANY_TEMPLATE = "*"


def _any_template(present: Sequence[str]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """``key -> key`` with its template entry replaced by :data:`ANY_TEMPLATE`."""
    if "template" not in present:
        return lambda key: key
    at = list(present).index("template")
    return lambda key: (*key[:at], ANY_TEMPLATE, *key[at + 1 :])


def _log_run(row: Mapping[str, Any]) -> None:
    logger.info(
        "%s %s seed %d: top-5%% coverage %.3f, best %.2f (%.1f s)",
        row["benchmark"],
        row["method"],
        row["seed"],
        row["top5_coverage"],
        row["best_found"],
        row["seconds"],
    )


def _applicable(pools: Sequence[str], methods: Sequence[str]) -> list[tuple[str, str]]:
    """The (pool, method) pairs to run: every pair except those where the method does not
    apply to the pool, which are named in one warning per pool."""
    pairs = []
    for pool in pools:
        skipped = []
        for method in methods:
            reason = METHODS.get(method).skip_reason(_pool(pool))
            if reason is None:
                pairs.append((pool, method))
            else:
                skipped.append(reason)
        if skipped:
            logger.warning("Skipped on %s: %s", pool, " ".join(skipped))
    return pairs


def _wanted_runs(
    pairs: Sequence[tuple[str, str]],
    seeds: Sequence[int],
    options: Mapping[str, Mapping[str, Any]],
    present: Sequence[str],
    protocol: ProtocolConfig,
    templates: Mapping[str, str],
    model: str,
) -> list[tuple[tuple[str, str, int], tuple[str, ...]]]:
    """Every (pool, method, seed) asked for, with its run key in the ``present`` columns."""
    runs = []
    for pool, method in pairs:
        opts = options.get(method) or {}
        for seed in seeds:
            key = {
                "benchmark": pool,
                "method": method_label(method, opts),
                "seed": int(seed),
                "iterations": protocol.iterations,
                "template": templates[pool] if METHODS.get(method).uses_model else ANY_TEMPLATE,
                "model": model if METHODS.get(method).uses_model else "",
                "n_initial": protocol.n_initial,
                "batch_size": protocol.batch_size,
            }
            runs.append(((pool, method, int(seed)), _key(key, present)))
    return runs


def _run_plan(
    plan: Sequence[tuple[str, str, int]],
    options: Mapping[str, Mapping[str, Any]],
    protocol: ProtocolConfig,
    templates: Mapping[str, str],
    build: dict[str, Any],
    bar: Any,
) -> Iterator[RunResult]:
    """Run ``plan`` in order, each run's result as it finishes; a (pool, method)'s
    surrogate (with the pool's template and ``build``: model, device) or peer proposer is
    built once for all its seeds."""
    surrogate: Surrogate | None = None
    proposer: Proposer | None = None
    built_for: tuple[str, str] | None = None
    for pool, method, seed in plan:
        opts = options.get(method) or {}
        template = templates[pool]
        if built_for != (pool, method):
            surrogate = proposer = None  # free the previous transformer first
            if METHODS.get(method).proposer is not None:
                proposer = build_proposer(pool, method)
            else:
                surrogate = build_surrogate(pool, method, template=template, options=opts, **build)
            built_for = (pool, method)
        if bar is not None:
            bar.set_description(f"{pool} {method} seed {seed}")
        yield run_one(
            pool,
            method,
            seed,
            template=template,
            protocol=protocol,
            surrogate=surrogate,
            options=opts,
            proposer=proposer,
            **build,
        )
