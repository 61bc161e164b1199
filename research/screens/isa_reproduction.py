"""Check (2026-11-24): do two committed benchmark runs repeat on this machine?

Re-runs ``components`` bh1 seed 0 (committed in ``benchmarks/results/tie_break_components.csv``) and
``projection`` [procedure] bh1 seed 0 (committed in ``benchmarks/results/reactions.csv``) with the
benchmark runner and prints the new and the committed coverage and best yield. Run it once
as is and once with torch, MKL and oneDNN held to AVX2 to see the instruction set's effect:

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/isa_reproduction.py
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 DNNL_MAX_CPU_ISA=AVX2 \
        OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/isa_reproduction.py
"""

from pathlib import Path

import pandas as pd
import torch

from llmbo.benchmarks.runner import run_one

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _committed(frame: pd.DataFrame, method: str, template: str) -> pd.Series:
    rows = frame[
        (frame["benchmark"] == "bh1")
        & (frame["seed"] == 0)
        & (frame["method"] == method)
        & (frame["template"] == template)
    ]
    return rows.iloc[0]


def main() -> None:
    torch.set_num_threads(1)
    print("torch CPU capability:", torch.backends.cpu.get_cpu_capability())
    ties = pd.read_csv(RESULTS / "tie_break_components.csv", keep_default_na=False)
    reactions = pd.read_csv(RESULTS / "reactions.csv", keep_default_na=False)
    for method, frame in (("components", ties), ("projection", reactions)):
        ref = _committed(frame, method, "procedure")
        row = run_one("bh1", method, 0, template="procedure").row
        print(
            f"{method} bh1 seed 0: now coverage {row['top5_coverage']}, best "
            f"{row['best_found']:.2f}; committed {ref['top5_coverage']}, best "
            f"{float(ref['best_found']):.2f} (commit {ref['git_commit']})",
            flush=True,
        )


if __name__ == "__main__":
    main()
