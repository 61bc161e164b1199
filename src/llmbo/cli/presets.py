"""``llmbo presets``: the registered presets, and what each makes of a given table."""

from __future__ import annotations

import argparse
from typing import Any

from llmbo.cli import common

_DESCRIPTION = (
    "List the registered presets: the named surrogate configurations that `--surrogate` "
    "takes and that `llmbo bench` measures. With --table (or --benchmark) each preset is "
    "resolved on those candidates: the columns found, the surrogate it becomes, or why it "
    "cannot run there."
)
_EXAMPLES = (
    "examples:\n"
    "  llmbo presets\n"
    "  llmbo presets --table screen.csv --template '{ligand}, {base}, {solvent}'"
)


def register(subparsers: Any) -> None:
    """Add ``llmbo presets`` to the ``llmbo`` parser."""
    p = common.add_command(
        subparsers,
        "presets",
        "list presets; show what they make of a table",
        _DESCRIPTION,
        _EXAMPLES,
    )
    common.add_space_options(p, target=False)
    p.add_argument(
        "--all",
        action="store_true",
        help="also list the research variants (segment pooling, hybrids, soft tokens...)",
    )
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from llmbo.errors import InputError
    from llmbo.presets import DEFAULT_PRESET, PRESETS, TableColumns, product_presets

    columns = None
    if args.table or args.benchmark:
        choice = common.build_space(args, need_target=False)
        template = args.template
        columns = (
            TableColumns.from_pool(choice.pool, template)
            if choice.pool is not None
            else TableColumns.detect(choice.space)
        )
        print(f"columns: {columns.describe()}")
    for name in PRESETS.names() if args.all else product_presets():
        preset = PRESETS.get(name)
        mark = " (default)" if name == DEFAULT_PRESET else ""
        line = f"{name}{mark}: {preset.description}"
        if columns is not None:
            try:
                resolved = preset.resolve(columns)
            except InputError as exc:
                line += f"\n    cannot run here: {exc}"
            else:
                extra = "".join(f", {k}={v}" for k, v in resolved.acquisition.items())
                line += f"\n    -> the {resolved.spec.name} surrogate{extra}"
                if resolved.reason:
                    line += f" ({resolved.reason})"
        print(line)
    return 0
