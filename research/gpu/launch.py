"""Device side: run llmbo with the Buchwald-Hartwig table read from .gpu/bh_table.parquet.

RDKit, which llmbo uses to build that table, does not fit in one call's carry together with
the model (see prepare.sh). ``python3 .gpu/launch.py speed ARGS`` runs the speed benchmark,
``python3 .gpu/launch.py SCRIPT.py ARGS`` a script, anything else the ``llmbo`` CLI. The
results' ``git_commit`` comes from $LLMBO_GIT_COMMIT (the device copy has no .git).

It uses only public switches: ``LLMBO_BH_TABLE`` (the pools read that Parquet file) and
``LLMBO_GIT_COMMIT`` (the commit recorded with results).
"""

import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The pools read the prebuilt table (the GPU machine has no RDKit); the runner records the
# commit given by LLMBO_GIT_COMMIT (the copied tree has no .git).
os.environ.setdefault("LLMBO_BH_TABLE", os.path.join(HERE, "bh_table.parquet"))

if sys.argv[1] == "speed":
    from llmbo.benchmarks.speed import main

    sys.exit(main(sys.argv[2:]))
if sys.argv[1].endswith(".py"):
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit(0)
from llmbo.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
