"""``llmbo run``: a simulated campaign on a table whose target column is known.

The benchmark use: every suggested candidate is "measured" by looking up its value in the
table, so a whole campaign runs unattended and can be scored against the full pool.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmbo._files import write_csv_atomic
from llmbo.cli import common
from llmbo.errors import InputError

if TYPE_CHECKING:
    from llmbo.optimizer import Optimizer

DEFAULT_ITERATIONS = 20
DEFAULT_N_INITIAL = 10

_DESCRIPTION = (
    "Run Bayesian optimisation on a pool whose values are already known: each "
    "suggestion is 'measured' by looking up its target value. With --benchmark the "
    f"campaign starts from {DEFAULT_N_INITIAL} random candidates of the pool's worse half "
    "(below the median; above it on a minimised pool such as freesolv: the benchmark "
    "protocol); with --table from --n-initial random rows. With --warm-start "
    "llm a language model proposes those --n-initial candidates instead."
)
_EXAMPLES = (
    "examples:\n"
    "  llmbo run --benchmark bh1 --iterations 5\n"
    "  llmbo run --table runs.csv --template '{catalyst} in {solvent} at {temp} C' "
    "--target yield --surrogate projection --output history.csv\n"
    "  llmbo run --benchmark bh1 --warm-start llm --llm-backend openai "
    "--llm-model gpt-4o-mini --iterations 20"
)


def register(subparsers: Any) -> None:
    """Add ``llmbo run`` to the ``llmbo`` parser."""
    summary = "simulated campaign on a table with a known target (benchmark use)"
    p = common.add_command(subparsers, "run", summary, _DESCRIPTION, _EXAMPLES)
    common.add_space_options(p, target=True)
    campaign = p.add_argument_group("campaign")
    campaign.add_argument(
        "--iterations",
        type=common.non_negative_int,
        default=DEFAULT_ITERATIONS,
        help=f"BO iterations (default {DEFAULT_ITERATIONS})",
    )
    campaign.add_argument(
        "--batch-size",
        type=common.positive_int,
        default=1,
        help="candidates per iteration (default 1)",
    )
    campaign.add_argument(
        "--lease-seconds",
        type=common.positive_float,
        default=60.0,
        metavar="S",
        help="with --study: a trial whose process stopped (crash, kill) is offered again "
        "after this many seconds (default 60); the run keeps its own trials alive meanwhile",
    )
    campaign.add_argument(
        "--n-initial",
        type=common.non_negative_int,
        default=DEFAULT_N_INITIAL,
        help=f"random starting candidates (default {DEFAULT_N_INITIAL}; "
        "from the worse half of the pool for --benchmark)",
    )
    common.add_model_options(p, defaults=False)
    common.add_warm_start_options(p, n_initial=False)
    out = p.add_argument_group("output")
    common.add_study_options(out, required=False)
    out.add_argument(
        "--output", metavar="CSV", help="write the history (one row per trial) to this CSV"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_command)


def _initial_rows(
    values: np.ndarray, n: int, seed: int, *, benchmark: bool, maximize: bool
) -> np.ndarray:
    if benchmark:
        from llmbo.design import initial_design

        return initial_design(values, n, seed, maximize=maximize)
    rng = np.random.default_rng(seed)
    return rng.choice(len(values), size=n, replace=False).astype(np.int64)


def run_command(args: argparse.Namespace) -> int:
    from llmbo import metrics
    from llmbo.optimizer import TableObjective

    started = time.perf_counter()
    # Everything that can be checked is checked before a study is created or a model loaded.
    choice = common.build_space(args, need_target=True)
    space = choice.space
    assert choice.target is not None
    objective = TableObjective(space, choice.target)
    pool_values = pd.to_numeric(space.frame[choice.target]).to_numpy(dtype=np.float64)
    n_init, budget = args.n_initial, args.iterations * args.batch_size
    _check_budget(args, len(space))
    protected = [("--study", args.study or ""), ("--table", args.table or "")]
    output = (
        common.check_output_path(args.output, "--output", protected=protected)
        if args.output
        else None
    )
    progress = not args.no_progress
    opt = _prepared_optimizer(args, choice, progress=progress)
    load_seconds = time.perf_counter() - started

    warm = _warm_start(opt)
    if warm is not None:
        # The LLM proposes the initial design as one batch (resumable like the rest).
        opt.run_until(objective, n_init, batch_size=max(1, n_init))
        note = common.warm_start_note(opt.last_info)
        if note is not None:
            print(note)
    else:
        # The study's own seed and direction (a reopened study keeps those it was created with).
        start_rows = _initial_rows(
            pool_values, n_init, opt.seed, benchmark=choice.pool is not None, maximize=opt.maximize
        )
        start_ids = [space.ids[i] for i in start_rows]
        if start_ids:
            opt.tell(start_ids, pool_values[start_rows].tolist())
    # run_until counts what the study already holds, so re-running the same command on an
    # existing --study (e.g. after a crash) only measures what is missing.
    history = opt.run_until(objective, n_init + budget, batch_size=args.batch_size)
    seconds = time.perf_counter() - started

    if output is not None:
        write_csv_atomic(history, output)
    _summary(args, choice, opt, history, pool_values, n_init, seconds, load_seconds, metrics)
    if output is not None:
        print(f"history written to {output}")
    if args.study:
        print(f"study {args.study_name!r} kept in {common.display_location(args.study)}")
    return 0


def _check_budget(args: argparse.Namespace, n: int) -> None:
    """Refuse an initial design, batch or campaign larger than the pool of ``n``."""
    n_init, budget = args.n_initial, args.iterations * args.batch_size
    if n_init > n:
        raise InputError(
            f"--n-initial {n_init} is larger than the pool ({n} candidates); lower it."
        )
    if args.batch_size > n - n_init:
        raise InputError(
            f"--batch-size {args.batch_size} is larger than the pool left after the initial design "
            f"({n - n_init} of {n} candidates); lower --batch-size or --n-initial."
        )
    if n_init + budget > n:
        raise InputError(
            f"{n_init} initial + {args.iterations} iterations x {args.batch_size} = "
            f"{n_init + budget} evaluations, but the pool has only {n} candidates; "
            "lower --iterations."
        )


def _prepared_optimizer(
    args: argparse.Namespace, choice: common.SpaceChoice, *, progress: bool
) -> Optimizer:
    """The campaign's optimizer (on ``--study`` when given) with its model loaded; a study
    this call created is removed again if anything fails before it is used."""
    from llmbo.optimizer import Optimizer

    opt = None
    try:
        if args.study:
            # The same rule as `llmbo suggest`: an existing study keeps its settings (options
            # that contradict them are refused); a new one is created once all checks pass.
            common.check_study_location(args.study)
            store = (
                None
                if common.is_new_file(args.study)
                else common.open_storage(args.study, must_exist=False)
            )
            opt = common.open_or_create(args, store, choice, progress=progress, n=args.n_initial)
        else:
            preset = common.surrogate_choice(args, choice.pool, choice.space)
            common.note_preset(preset)
            spec = preset.spec
            acquisition = common.acquisition_config(args, preset)
            proposer = common.warm_start_proposer(
                args, spec, acquisition, n_initial=args.n_initial, progress=progress
            )
            opt = Optimizer(
                choice.space,
                spec,
                acquisition=acquisition,
                maximize=not common.minimize_target(args, choice.pool),
                seed=args.seed if args.seed is not None else 0,
                progress=progress,
                proposer=proposer,
            )
        # Load the model now: a bad model path fails here, before anything is measured.
        opt.proposer.prepare(choice.space, progress=progress)
    except BaseException:
        common.discard_if_unused(opt)
        raise
    return opt


def _warm_start(opt: Optimizer) -> Any:
    """The study's warm-start proposer (``None``: the initial design is random)."""
    from llmbo.proposers import WarmStartProposer

    return opt.proposer if isinstance(opt.proposer, WarmStartProposer) else None


def _summary(
    args: argparse.Namespace,
    choice: Any,
    opt: Any,
    history: Any,
    pool_values: np.ndarray,
    n_init: int,
    seconds: float,
    load_seconds: float,
    metrics: Any,
) -> None:
    space = choice.space
    maximize = opt.maximize
    done = history[history["state"] == "complete"]
    values = done["value"].to_numpy(dtype=np.float64)
    sign = 1.0 if maximize else -1.0
    pool_best = float(pool_values.max() if maximize else pool_values.min())
    best = opt.best(1)
    if len(best) == 0:
        print("\nllmbo run: nothing was evaluated (--n-initial 0 and --iterations 0).")
        return
    best_value = float(best[space.value_column].iloc[0])
    rank = int(np.count_nonzero(sign * pool_values > sign * best_value)) + 1
    found_at = metrics.iteration_of_max(
        sign * values, sign * pool_best, n_init, batch_size=args.batch_size
    )
    coverage = metrics.top_fraction_coverage(sign * values, sign * pool_values, 0.05)
    threshold = np.quantile(sign * pool_values, 0.95)
    n_top = int(np.count_nonzero(sign * pool_values >= threshold))
    hits = int(np.count_nonzero(sign * values >= threshold))
    model = (
        f" on {opt.spec.encoder.model}"
        if opt.spec and opt.surrogate_name in ("static", "projection", "lora")
        else ""
    )
    direction = "max" if maximize else "min"

    print()
    print(
        f"llmbo run: {choice.label}, {len(space)} candidates, "
        f"target {choice.target!r} ({direction}imised)"
    )
    print(
        f"  surrogate {opt.surrogate_name}{model}, acquisition {common.acquisition_label(opt)}, "
        f"seed {opt.seed}; {n_init} initial + {args.iterations} iterations x "
        f"{args.batch_size} = {len(values)} evaluations"
    )
    warm = _warm_start(opt)
    if warm is not None:
        print(f"  warm start: the first {warm.n_initial} proposed by {warm.initial.label}")
    print(
        f"best found    {common.format_value(best_value)}  (rank {rank} of {len(space)} in the pool)"
    )
    print(f"  id          {best.index[0]}")
    print(f"  text        {common.short(best[space.text_column].iloc[0], 110)}")
    where = (
        "not found"
        if found_at is None
        else ("found in the initial design" if found_at == 0 else f"found at iteration {found_at}")
    )
    print(f"pool {direction}      {common.format_value(pool_best)}  ({where})")
    print(f"top-5% hits   {hits} of {n_top}  (coverage {100 * coverage:.1f} %)")
    print(f"time          {seconds:.1f} s  (model and pool set-up {load_seconds:.1f} s)")
