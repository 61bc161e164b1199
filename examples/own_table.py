"""Optimise your own reaction table: a simulated campaign on a table with a known target,
and what the presets make of its columns.

    python examples/own_table.py [--smoke]
"""

from __future__ import annotations

from _common import parse

from llmbo.cli import main as llmbo
from llmbo.datasets import load_pool

args = parse(__doc__.splitlines()[0])
# A packaged Buchwald-Hartwig pool written out as "your" table (names and yields).
pool = load_pool("bh1")
table = args.out / "bh1.csv"
pool.frame.drop(columns=["reaction_id"]).to_csv(table, index=False)
template = "{ligand_name}, {aryl_halide_name}, {additive_name}, {base_name}"

llmbo(["presets", "--table", str(table), "--template", template])
iterations = "3" if args.smoke else "30"
llmbo(["run", "--table", str(table), "--template", template, "--target", "yield",
       "--n-initial", "10", "--iterations", iterations, "--study", str(args.out / "bh1.db"),
       "--output", str(args.out / "history.csv"), "--no-progress"])  # fmt: skip
