"""``llmbo suggest`` / ``observe`` / ``status``: real campaigns, one call per step.

The study (candidates, settings, every suggestion and measurement) lives in a SQLite file
(or any SQLAlchemy URL) between calls. The first ``suggest`` creates it; later calls reopen
it with :meth:`llmbo.optimizer.Optimizer.load`, so a campaign run as many separate calls
suggests exactly what one process would.

A call that fails leaves the study as it was: ``suggest`` checks everything it can before it
creates a study file, and removes a study it created itself only if nobody has used it;
``observe`` checks the whole results file and stores it in one transaction; ``status`` opens
the study read-only and never writes.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmbo._files import write_csv_atomic
from llmbo.cli.common import (
    SPACE_OPTIONS,
    acquisition_label,
    add_command,
    add_model_options,
    add_space_options,
    add_study_options,
    add_warm_start_options,
    build_space,
    check_output_path,
    check_study_location,
    discard_if_unused,
    display_location,
    format_value,
    is_new_file,
    load_study,
    open_or_create,
    open_storage,
    path_kind,
    positive_int,
    print_rows,
    short,
    stored_table,
    warm_start_note,
)
from llmbo.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from llmbo.optimizer import Optimizer

MAX_LISTED = 10

_SUGGEST_DESCRIPTION = (
    "Suggest the next candidates of a campaign kept in a study file. The first call "
    "creates the study from --benchmark or --table/--template and the model options; "
    "later calls reopen it (its settings are fixed at creation)."
)
_SUGGEST_EXAMPLES = (
    "example:\n"
    "  llmbo suggest --study camp.db --table grid.csv \\\n"
    "      --template '{ligand} with {base}' -n 4 --out next.csv\n"
    "  (measure them, add a 'value' column)\n"
    "  llmbo observe --study camp.db --results next.csv\n"
    "  llmbo suggest --study camp.db -n 4 --out next.csv"
)
_OBSERVE_DESCRIPTION = (
    "Record measurements: read candidate ids and values from a CSV and store them in "
    "the study. The whole file is checked first (missing columns, unknown or repeated "
    "ids, values that are empty, NaN, infinite or not numbers, values that contradict "
    "earlier ones); if anything is wrong, nothing is recorded."
)


def _register_suggest(subparsers: Any) -> None:
    summary = "suggest the next candidates to measure (creates the study on first use)"
    s = add_command(subparsers, "suggest", summary, _SUGGEST_DESCRIPTION, _SUGGEST_EXAMPLES)
    add_study_options(s, required=True)
    s.add_argument(
        "-n", "--n-suggestions", dest="n", type=positive_int, default=1, help="how many (default 1)"
    )
    s.add_argument(
        "--out",
        metavar="CSV",
        help="write the suggestions (candidate_id, text, table columns) here",
    )
    s.add_argument(
        "--release-pending",
        action="store_true",
        help="first offer again every suggestion that was handed out but never observed",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_space_options(s, target=False)
    add_model_options(s, defaults=False)
    add_warm_start_options(s, n_initial=True)
    s.set_defaults(
        func=suggest_command,
        interrupted="the study holds what it held before, plus this call's suggestions as "
        "pending if they were made (`llmbo status` shows them; --release-pending offers them "
        "again).",
    )


def _register_observe(subparsers: Any) -> None:
    summary = "record measured values from a CSV (all rows checked before any is stored)"
    o = add_command(subparsers, "observe", summary, _OBSERVE_DESCRIPTION)
    add_study_options(o, required=True)
    o.add_argument(
        "--results", metavar="CSV", required=True, help="CSV with one row per measured candidate"
    )
    o.add_argument(
        "--id-col", default="candidate_id", help="column of candidate ids (default candidate_id)"
    )
    o.add_argument("--value-col", default="value", help="column of measured values (default value)")
    o.set_defaults(
        func=observe_command,
        interrupted="a results file is stored whole or not at all; `llmbo status` shows "
        "which, and observing the same file again is safe.",
    )


def _register_status(subparsers: Any) -> None:
    t = add_command(subparsers, "status", "counts per trial state and the best candidates so far")
    add_study_options(t, required=True)
    t.add_argument(
        "--top", type=positive_int, default=5, help="how many best rows to show (default 5)"
    )
    t.set_defaults(func=status_command, interrupted="nothing was changed (status only reads).")


def register(subparsers: Any) -> None:
    """Add ``suggest``, ``observe`` and ``status`` to the ``llmbo`` parser."""
    _register_suggest(subparsers)
    _register_observe(subparsers)
    _register_status(subparsers)


# ------------------------------------------------------------------------------ suggest
def suggest_command(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    check_study_location(args.study)
    protected = [("--study", args.study), ("--table", args.table or "")]
    out = check_output_path(args.out, "--out", protected=protected) if args.out else None
    store = None if is_new_file(args.study) else open_storage(args.study, must_exist=False)
    given = any(getattr(args, o, None) for o in SPACE_OPTIONS)
    choice = build_space(args, need_target=False) if given else None
    opt = None
    try:
        opt = open_or_create(args, store, choice, progress=progress, n=args.n)
        if out is not None:  # the table the study was made from, when this call did not say
            check_output_path(args.out, "--out", protected=[("--table", stored_table(opt))])
        released = opt.release_pending() if getattr(args, "release_pending", False) else []
        if released:
            print(f"released {len(released)} pending suggestion(s)")
        # Build and prepare the surrogate before asking: a bad model fails here, and the
        # surrogate's own set-up never touches the seeded random stream of the suggestion.
        opt.proposer.prepare(opt.space, progress=progress)
        ids = opt.ask(args.n)
    except BaseException:
        discard_if_unused(opt)
        raise

    rows = opt.space.rows(ids).reset_index()
    id_label, text_label = opt.space.id_label, opt.space.text_column
    if out is not None:
        try:
            write_csv_atomic(rows, out)
        except OSError as exc:
            opt.fail(ids, f"could not write the suggestions to {out}: {exc}")
            raise InputError(
                f"Could not write --out {str(out)!r}: {exc}; nothing was suggested."
            ) from exc

    history = opt.history
    pending = int(history["state"].isin(["pending", "running"]).sum())
    verb = "created" if opt.created_study else "continued"
    print(
        f"study {args.study_name!r} {verb} in {display_location(args.study)}: "
        f"{len(opt.space)} candidates, {int((history['state'] == 'complete').sum())} measured, "
        f"{pending} pending"
    )
    note = warm_start_note(opt.last_info)
    if note is not None:
        print(note)
    print(f"{len(ids)} suggestion(s):")
    print_rows(
        [
            {"candidate_id": cid, "text": short(text, 90)}
            for cid, text in zip(rows[id_label], rows[text_label], strict=True)
        ],
        ["candidate_id", "text"],
    )
    if out is not None:
        value = opt.space.value_column
        columns = "" if id_label == "candidate_id" else f" --id-col {id_label}"
        columns += "" if value == "value" else f" --value-col {value}"
        print(
            f"written to {out}; measure them, add a {value!r} column and run "
            f"`llmbo observe --study {display_location(args.study)} --results {out}{columns}`"
        )
    return 0


# ------------------------------------------------------------------------------ observe
#: A measured value as written in a results file: a plain decimal number with ASCII digits
#: (``12``, ``-0.5``, ``3e-4``), or nan/inf (refused later as not finite). Python's float()
#: also takes ``1_000`` and full-width digits, which a results file should never hold.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.I)


def parse_number(text: str) -> float:
    """A value from a results file; :class:`ValueError` unless it is a plain number."""
    if not text.isascii() or _NUMBER.fullmatch(text) is None:
        raise ValueError(text)
    return float(text)


def _read_results(
    path: str, id_col: str, value_col: str, opt: Optimizer
) -> tuple[list[str], list[float]]:
    """Read and check the whole results file; one :class:`InputError` lists every problem."""
    frame = _results_frame(path, id_col, value_col)
    ids = [s.strip() for s in frame[id_col].astype(str)]
    raw = [s.strip() for s in frame[value_col].astype(str)]
    values, problems = _check_results(ids, raw, opt)
    if problems:
        raise InputError(
            f"Results file {path!r} was not recorded (nothing was stored): "
            + " | ".join(problems)
            + ". Fix the file and run observe again."
        )
    return ids, values


def _results_frame(path: str, id_col: str, value_col: str) -> pd.DataFrame:
    """The results file as text cells, with its id and value columns; :class:`InputError`
    if it is missing, unreadable, lacks those columns or has no rows."""
    import pandas as pd

    p = Path(path)
    kind = path_kind(p, "--results")
    if kind == "missing":
        raise InputError(f"Results file {path!r} does not exist.")
    if kind == "dir":
        raise InputError(f"--results {path!r} is a directory; give the CSV file.")
    try:
        sep = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, sep=sep)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"Results file {path!r} is empty; it needs a header ({id_col},{value_col}) and "
            "one row per measurement."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"Could not read results file {path!r}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in (id_col, value_col) if c not in frame.columns]
    if missing:
        raise InputError(
            f"Results file {path!r} has no column(s) {missing}; it has {list(frame.columns)}. "
            "Add them, or name the columns to use with --id-col and --value-col. "
            "Nothing was recorded."
        )
    if len(frame) == 0:
        raise InputError(f"Results file {path!r} has a header but no rows; nothing was recorded.")
    return frame


def _check_results(ids: list[str], raw: list[str], opt: Optimizer) -> tuple[list[float], list[str]]:
    """The values of a results file's rows and what is wrong with the file (nothing when it
    can be recorded): empty, unknown or repeated ids, values that are not finite numbers,
    values that contradict earlier measurements."""
    problems: list[str] = []

    def problem(kind: str, lines: list[str]) -> None:
        if lines:
            more = f" (and {len(lines) - MAX_LISTED} more)" if len(lines) > MAX_LISTED else ""
            problems.append(f"{kind}: {'; '.join(lines[:MAX_LISTED])}{more}")

    values: list[float] = []
    empty_ids, unknown, bad_values, not_finite = [], [], [], []
    for k, (cid, text) in enumerate(zip(ids, raw, strict=True)):
        line = k + 2  # the header is line 1
        if not cid:
            empty_ids.append(f"line {line}")
        elif cid not in opt.space:
            unknown.append(f"line {line} {cid!r}")
        try:
            value = parse_number(text)
        except ValueError:
            bad_values.append(f"line {line} {text!r}" if text else f"line {line} (empty)")
            value = math.nan
        else:
            if not math.isfinite(value):
                not_finite.append(f"line {line} {text!r}")
        values.append(value)
    seen: dict[str, int] = {}
    repeated = []
    for k, cid in enumerate(ids):
        if cid and cid in seen:
            repeated.append(f"{cid!r} on lines {seen[cid] + 2} and {k + 2}")
        seen.setdefault(cid, k)
    problem("missing candidate ids", empty_ids)
    problem("ids not in the study's candidates", unknown)
    problem("ids listed more than once (give one value per candidate)", repeated)
    problem("values that are not numbers", bad_values)
    problem(
        "values that are NaN or infinite (report failed experiments with a finite value)",
        not_finite,
    )

    if not problems:
        from llmbo.storage import TrialState

        done = {
            t.candidate_id: t.value
            for t in opt.storage.trials(opt.study.study_id, states=[TrialState.COMPLETE])
        }
        conflicts = [
            f"{cid!r} has {done[cid]!r}, file says {v!r}"
            for cid, v in zip(ids, values, strict=True)
            if cid in done and done[cid] != v
        ]
        problem("candidates already measured with a different value", conflicts)
    return values, problems


def observe_command(args: argparse.Namespace) -> int:
    from llmbo.storage import TrialState

    store = open_storage(args.study, must_exist=True)
    # observe builds no model either (see status_command).
    opt = load_study(store, args, progress=False, trust_remote_code=True, check_model=False)
    ids, values = _read_results(args.results, args.id_col, args.value_col, opt)
    trials = store.trials(opt.study.study_id)
    pending = {
        t.candidate_id for t in trials if t.state in (TrialState.PENDING, TrialState.RUNNING)
    }
    already = {t.candidate_id for t in trials if t.state is TrialState.COMPLETE}
    opt.tell(ids, values)

    n_pending = sum(cid in pending for cid in ids)
    n_again = sum(cid in already for cid in ids)
    n_new = len(ids) - n_pending - n_again
    parts = [f"{n_pending} suggested"]
    if n_new:
        parts.append(f"{n_new} not suggested by llmbo")
    if n_again:
        parts.append(f"{n_again} already recorded (same value, unchanged)")
    history = opt.history
    left = int(history["state"].isin(["pending", "running"]).sum())
    print(f"recorded {len(ids)} value(s) in study {args.study_name!r}: {', '.join(parts)}")
    print(
        f"{int((history['state'] == 'complete').sum())} measured, {left} suggestion(s) "
        f"still pending; best so far {format_value(opt.best_value)}"
    )
    return 0


# ------------------------------------------------------------------------------- status
def status_command(args: argparse.Namespace) -> int:
    from llmbo.proposers import WarmStartProposer

    store = open_storage(args.study, must_exist=True, readonly=True)
    # status builds no model, so a study that asks for trust_remote_code can be shown (with
    # that setting, below) without running anything.
    opt = load_study(store, args, progress=False, trust_remote_code=True, check_model=False)
    history = opt.history
    counts = history["state"].value_counts()
    spec = opt.spec
    encoder = getattr(spec, "encoder", None)  # surrogates on fixed features have none
    model = f" on {encoder.model}" if encoder is not None else ""
    direction = "maximise" if opt.maximize else "minimise"
    print(
        f"study {args.study_name!r} in {args.study}: {opt.space.name or 'table'}, "
        f"{len(opt.space)} candidates; surrogate {opt.surrogate_name}{model}, acquisition "
        f"{acquisition_label(opt)}, seed {opt.seed}, {direction}"
    )
    if isinstance(opt.proposer, WarmStartProposer):
        warm = opt.proposer
        print(f"warm start: the first {warm.n_initial} trial(s) proposed by {warm.initial.label}")
    if encoder is not None and encoder.trust_remote_code:
        print(
            "trust_remote_code: ON (the model's own Python code runs; every call that "
            "reopens this study must pass --trust-remote-code)"
        )
    taken = int(history.loc[history["state"] != "failed", "candidate_id"].nunique())
    print(
        "trials: "
        + ", ".join(
            f"{int(counts.get(state, 0))} {state}"
            for state in ("complete", "pending", "running", "failed")
        )
        + f"; {len(opt.space) - taken} candidates never tried"
    )
    waiting = history.loc[history["state"].isin(["pending", "running"]), "candidate_id"].tolist()
    if waiting:
        shown = ", ".join(waiting[:MAX_LISTED]) + (" ..." if len(waiting) > MAX_LISTED else "")
        print(f"awaiting results: {shown}")
    best = opt.best(args.top)
    if len(best) == 0:
        print("no measurements yet")
        return 0
    print(f"best {len(best)}:")
    print_rows(
        [
            {
                "rank": r + 1,
                "value": format_value(float(v)),
                "candidate_id": cid,
                "text": short(text, 80),
            }
            for r, (cid, v, text) in enumerate(
                zip(
                    best.index,
                    best[opt.space.value_column],
                    best[opt.space.text_column],
                    strict=True,
                )
            )
        ],
        ["rank", "value", "candidate_id", "text"],
    )
    return 0
