"""Quickstart: a suggestion for your own CSV table, by the command line and from Python.

python examples/quickstart.py [--smoke]
"""

from __future__ import annotations

import pandas as pd
from _common import parse

from llmbo import CandidateSpace, Optimizer
from llmbo.cli import main as llmbo

args = parse(__doc__.splitlines()[0])
rows = [
    {"ligand": lig, "base": base, "solvent": solvent}
    for lig in ("XPhos", "SPhos", "BrettPhos", "tBuXPhos")
    for base in ("K2CO3", "Cs2CO3", "DBU")
    for solvent in ("dioxane", "toluene", "DMSO")
]
table = args.out / "screen.csv"
pd.DataFrame(rows).to_csv(table, index=False)

# The command line: suggest, (run the experiments), observe, suggest again.
study = args.out / "campaign.db"
template = "{ligand} with {base} in {solvent}"
llmbo(["suggest", "--study", str(study), "--table", str(table), "--template", template,
       "-n", "4", "--out", str(args.out / "next.csv"), "--no-progress"])  # fmt: skip
first = pd.read_csv(args.out / "next.csv")
measured = first[["candidate_id"]].assign(value=[61.0, 48.5, 72.3, 55.0])  # your results
measured.to_csv(args.out / "measured.csv", index=False)
llmbo(["observe", "--study", str(study), "--results", str(args.out / "measured.csv")])
llmbo(
    [
        "suggest",
        "--study",
        str(study),
        "-n",
        "2",
        "--out",
        str(args.out / "next.csv"),
        "--no-progress",
    ]
)
print(pd.read_csv(args.out / "next.csv")[["candidate_id", "text"]])

# The same from Python: ask, tell, ask.
space = CandidateSpace(pd.DataFrame(rows), template)
opt = Optimizer(space, seed=0, progress=False)  # the default preset; its choice is logged
ids = opt.ask(4)
opt.tell(ids, [61.0, 48.5, 72.3, 55.0])
print(space.rows(opt.ask(2)))
