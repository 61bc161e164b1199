"""``llmbo report``: one self-contained HTML page for a stored study."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from llmbo.cli import common
from llmbo.errors import InputError

_DESCRIPTION = (
    "Write one HTML file that opens offline (figures embedded) for a stored study: a "
    "campaign, a LoRA search or a catalyst run. It shows the best value so far and the "
    "pool's top-5 % found next to random search's expectation (when every candidate's value "
    "is known), the model's calibration at the time of each suggestion, a 2-D map of the "
    "candidate features before and after training, parameter plots for searches over a "
    "grid, the catalyst's losses and the mentor's proposals, and a sortable, filterable "
    "table of the trials. Nothing is refitted: the report reads what the study recorded."
)
_EXAMPLES = (
    "examples:\n"
    "  llmbo report campaign.db\n"
    "  llmbo report runs.db --name screen-2 -o screen-2.html --target yield"
)


def register(subparsers: Any) -> None:
    """Add ``llmbo report`` to the ``llmbo`` parser."""
    p = common.add_command(
        subparsers,
        "report",
        "write a self-contained HTML report of a study",
        _DESCRIPTION,
        _EXAMPLES,
    )
    p.add_argument("study", metavar="STUDY", help="study file (SQLite) or database URL")
    p.add_argument(
        "--name", default=None, help="study name (default: the only study there, or 'default')"
    )
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="HTML file (default: NAME_report.html)"
    )
    p.add_argument(
        "--target",
        metavar="COL",
        default=None,
        help="table column holding every candidate's value (default: found when one "
        "agrees with every measurement)",
    )
    p.add_argument(
        "--map",
        choices=("pca", "tsne", "umap"),
        default="pca",
        help="2-D map of the features: pca (default), tsne (scikit-learn) or umap (umap-learn)",
    )
    p.set_defaults(func=_main)


def _pick(names: list[str], wanted: str | None, where: str) -> str:
    if not names:
        raise InputError(f"{where} holds no studies; nothing to report.")
    if wanted is not None:
        if wanted not in names:
            raise InputError(
                f"No study {wanted!r} in {where}; its studies: {', '.join(map(repr, names))}."
            )
        return wanted
    if len(names) == 1:
        return names[0]
    if "default" in names:
        return "default"
    raise InputError(
        f"{where} holds several studies ({', '.join(map(repr, names))}); choose one with --name."
    )


def _main(args: argparse.Namespace) -> int:
    from llmbo.report import load_study_data, study_report_html, write_html

    start = time.perf_counter()
    store = common.open_storage(args.study, must_exist=True, readonly=True)
    where = common.display_location(args.study)
    name = _pick(store.study_names(), args.name, where)
    data = load_study_data(store, name, target=args.target)
    if data.trials.empty and not data.catalyst:
        raise InputError(f"Study {name!r} in {where} has no trials yet; nothing to report.")
    out = args.output or Path(f"{name}_report.html")
    common.check_output_path(str(out), "-o", protected=(("STUDY", args.study),))
    write_html(study_report_html(data, map_method=args.map), out)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MB, {time.perf_counter() - start:.1f} s)")
    return 0
