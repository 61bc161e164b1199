"""Device side: concatenate the parallel bench processes' results, one CSV per kind."""

import glob
import sys

import pandas as pd

out = sys.argv[1]
for name in ("reactions.csv", "reactions_curves.csv"):
    files = sorted(glob.glob(f"/tmp/r*/{name}"))
    if files:
        frames = [pd.read_csv(f) for f in files]
        pd.concat(frames).to_csv(f"{out}/{name}", index=False)
        print(name, sum(len(f) for f in frames), "rows from", len(files), "files")
