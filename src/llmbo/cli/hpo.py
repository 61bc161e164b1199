"""``llmbo hpo``: search LoRA hyperparameters with real PEFT trials, resumable.

Every trial is stored in the study file as it ends; run the same command again to resume
(suggestions an interrupted run left unfinished are offered again).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmbo.cli import common
from llmbo.errors import InputError

_DESCRIPTION = (
    "Search LoRA finetuning hyperparameters (rank, alpha/rank, dropout, batch size, learning "
    "rate and any peft.LoraConfig field) with language-aided Bayesian optimisation. Each "
    "trial trains LoRA adapters on a proxy subset of the training split and scores the "
    "validation split; --final retrains the best configuration on the whole training split "
    "and scores the test split."
)
_EXAMPLES = (
    "examples:\n"
    "  llmbo hpo --task esol --trials 30 --study hpo.db\n"
    "  llmbo hpo --data reviews.csv --text-column review --label-column stars "
    "--metric accuracy --trials 20 --study reviews.db --workers 2\n"
    "  llmbo hpo --task esol --grid r=4,8,16 --grid learning_rate=1e-4,1e-3 "
    "--fixed target_modules=['query','value'] --trials 10 --study small.db"
)


def _options() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The options of ``llmbo hpo`` by group: flag -> ``add_argument`` keywords."""
    from llmbo.hpo.search import METHODS

    return {
        "task": task_options(),
        "search": [
            ("--method", {"choices": METHODS.names(), "default": "llmbo"}),
            ("--trials", {"type": common.non_negative_int, "default": 30}),
            (
                "--initial-trials",
                {
                    "type": common.positive_int,
                    "default": 5,
                    "help": "random trials before the model proposes (default 5)",
                },
            ),
            (
                "--proxy-fraction",
                {
                    "type": common.positive_float,
                    "default": 0.1,
                    "help": "share of the training split per trial (default 0.1)",
                },
            ),
            (
                "--grid",
                {
                    "action": "append",
                    "default": [],
                    "metavar": "NAME=V1,V2,...",
                    "help": "values of one hyperparameter (replaces its default; repeat)",
                },
            ),
            (
                "--fixed",
                {
                    "action": "append",
                    "default": [],
                    "metavar": "NAME=VALUE",
                    "help": "a setting shared by every trial (repeat)",
                },
            ),
        ],
        **_run_options(),
    }


def task_options() -> list[tuple[str, dict[str, Any]]]:
    """Options naming a task: a built-in one, or a data file with its columns and model."""
    from llmbo.hpo.task import TASKS

    return [
        ("--task", {"choices": TASKS.names(), "help": "a built-in task"}),
        ("--data", {"help": "CSV, TSV or Parquet file with a text and a label column"}),
        ("--text-column", {"default": "text", "help": "text column of --data"}),
        ("--label-column", {"default": "label", "help": "label column of --data"}),
        ("--kind", {"choices": ["regression", "classification"], "help": "head type"}),
        ("--metric", {"help": "rmse, mae, r2 or accuracy (default by --kind)"}),
        ("--model", {"default": "minilm", "help": "Hugging Face model id or path"}),
    ]


def _run_options() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The training and execution options of ``llmbo hpo``."""
    return {
        "training": [
            ("--epochs", {"type": common.positive_int, "default": 10}),
            ("--max-length", {"type": common.positive_int, "default": 64}),
            (
                "--time-limit",
                {
                    "type": common.positive_float,
                    "default": None,
                    "help": "seconds a trial may train before it fails",
                },
            ),
            ("--device", {"default": None, "help": "cpu, cuda, ... (default: CUDA if any)"}),
        ],
        "execution": [
            (
                "--workers",
                {
                    "type": _workers,
                    "default": 1,
                    "help": "trials in parallel on Ray (default 1: in this process)",
                },
            ),
            ("--ray-address", {"default": None, "help": "an existing Ray cluster (host:port)"}),
            ("--study", {"required": True, "help": "study file (SQLite) or database URL"}),
            ("--study-name", {"type": common.study_name_arg, "default": None}),
            ("--seed", {"type": common.seed_int, "default": 0}),
            (
                "--final",
                {
                    "action": "store_true",
                    "help": "retrain the best on the full training split; score test",
                },
            ),
            ("--no-progress", {"action": "store_true", "help": "no progress bar"}),
        ],
    }


def register(subparsers: Any) -> None:
    """Add ``llmbo hpo`` to the ``llmbo`` parser."""
    p = common.add_command(
        subparsers, "hpo", "search LoRA hyperparameters", _DESCRIPTION, _EXAMPLES
    )
    common.add_option_groups(p, _options())
    p.set_defaults(
        func=hpo_command, interrupted="every finished trial is saved; run again to resume."
    )


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of workers, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"--workers must be at least 1 (got {value}); 1 runs trials in this process"
        )
    return value


def _values(item: str, option: str) -> tuple[str, list[Any]]:
    from llmbo.surrogates.config import parse_value

    if "=" not in item:
        raise InputError(f"{option} needs NAME=VALUES, got {item!r}.")
    name, raw = (s.strip() for s in item.split("=", 1))
    if not name:
        raise InputError(f"{option} {item!r} names no hyperparameter.")
    if not raw:
        raise InputError(f"{option} {name}= has no values; give e.g. {name}=1,2,4.")
    parsed = parse_value(raw)
    if isinstance(parsed, tuple | list):
        return name, list(parsed)
    # Not one Python literal: comma-separated values, each a literal, true/false or text.
    return name, [parse_value(part.strip()) for part in raw.split(",")]


def _space(args: argparse.Namespace) -> Any:
    from llmbo.hpo.space import PAPER_GRID, LoraSearchSpace

    grid = dict(PAPER_GRID)
    for item in args.grid:
        name, values = _values(item, "--grid")
        bad = [v for v in values if isinstance(v, str)]
        if bad and name in PAPER_GRID:
            raise InputError(f"--grid {name}: values must be numbers, got {bad}.")
        grid[name] = values
    fixed = {}
    for item in args.fixed:
        name, values = _values(item, "--fixed")
        fixed[name] = values[0] if len(values) == 1 else values
        grid.pop(name, None)
    return LoraSearchSpace(grid=grid, fixed=fixed)


def task_from_args(args: argparse.Namespace) -> Any:
    """The task ``--task`` or ``--data`` names (:func:`task_options`)."""
    from llmbo.hpo.task import TASKS, LoraTask

    if (args.task is None) == (args.data is None):
        raise InputError(
            f"Give either --task ({' or '.join(TASKS.names())}) or --data FILE "
            "(with --text-column/--label-column)."
        )
    if args.task is not None:
        return TASKS.get(args.task)(args.model)
    return LoraTask.from_file(
        args.data,
        text_column=args.text_column,
        label_column=args.label_column,
        model=args.model,
        kind=args.kind,
        metric=args.metric,
    )


def hpo_command(args: argparse.Namespace) -> int:
    from llmbo.encoders.transformer import check_model_available
    from llmbo.hpo.search import LoraSearch
    from llmbo.hpo.task import TrainingConfig

    common.check_study_location(args.study)
    task = task_from_args(args)
    check_model_available(args.model)
    if args.ray_address is not None:
        from llmbo.hpo.search import check_ray_address

        check_ray_address(args.ray_address)
    training = TrainingConfig(
        epochs=args.epochs,
        max_length=args.max_length,
        time_limit=args.time_limit,
        device=args.device,
    )
    options = {k: getattr(args, k) for k in ("method", "proxy_fraction", "initial_trials",
                                             "model", "seed", "study_name")}  # fmt: skip
    progress = not args.no_progress and sys.stderr.isatty()
    search = LoraSearch(task, _space(args), training=training, storage=args.study,
                        progress=progress, **options)  # fmt: skip
    before = search.finished()
    history = search.run(args.trials, workers=args.workers, ray_address=args.ray_address)
    failed = int(history["error"].fillna("").astype(str).str.startswith("trial failed").sum())
    best = search.best()
    print(
        f"trials: {search.finished()} ({search.finished() - before} new, {failed} failed) "
        f"in study {common.display_location(args.study)!r}"
    )
    if best is None:
        print("no trial succeeded yet")
        return 1 if args.trials else 0
    value = best.pop("value")
    best.pop("candidate_id")
    print(f"best validation {task.metric_name}: {value:.6g}")
    print("best configuration: " + ", ".join(f"{k}={v}" for k, v in best.items()))
    if args.final:
        outcome = search.evaluate_best()
        if outcome is None or not outcome.ok:
            print(f"final retraining failed: {outcome.error if outcome else 'no result'}")
            return 1
        print(
            f"test {task.metric_name} after training on the full training split: {outcome.value:.6g}"
        )
    return 0
