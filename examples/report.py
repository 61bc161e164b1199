"""Read a report: run a short campaign into a study file and write its HTML report, and the
same figures from Python.

    python examples/report.py [--smoke]
"""

from __future__ import annotations

from _common import parse

from llmbo import Optimizer
from llmbo.cli import main as llmbo
from llmbo.datasets import load_pool
from llmbo.optimizer import TableObjective
from llmbo.report import calibration_figure, load_study_data, progress_figure

args = parse(__doc__.splitlines()[0])
pool = load_pool("bh1")
space = pool.space()
path = args.out / "campaign.db"
opt = Optimizer(space, seed=0, storage=path, study_name="default", progress=False)
opt.run(TableObjective(space, "yield"), iterations=8 if args.smoke else 40)

llmbo(["report", str(path), "-o", str(args.out / "campaign.html")])
data = load_study_data(path, "default")
progress_figure(data).savefig(args.out / "progress.png")
calibration_figure(data).savefig(args.out / "calibration.png")
print(f"report and figures in {args.out}")
