"""Fixed-seed campaigns whose suggestions must not change when the engine is reorganised.

Run as a script, it prints (``--record FILE``: writes) a JSON object mapping each campaign
key to the candidate ids its optimizer evaluated, in order. ``test_golden.py`` runs it in a
subprocess with torch, MKL and oneDNN held to AVX2 kernels, because float rounding (and so a
later pick of a deep kernel) differs between AVX2 and AVX-512 builds of the same kernels
(benchmarks/results/isa_reproduction.md); held to AVX2 the ids repeat on either CPU.

Campaigns (public API only):

* ``bh1/<method>/<seed>``: :func:`llmbo.benchmarks.runner.run_one` on the bh1 pool, names
  template, 10 random starts then 10 iterations, for ``lora``, ``projection``,
  ``components``, ``hybrid-onehot-seg`` (the best-measured hybrid) and ``random``.
* ``synthetic/<surrogate>/<seed>``: :class:`llmbo.Optimizer` with a surrogate name on a
  400-candidate synthetic text pool (tests/conftest.py), with the tiny random BERT of the
  test suite as the model, 12 asks of one after 2 random tells.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

#: Environment that makes torch, MKL and oneDNN use AVX2 kernels on any x86-64 CPU.
AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

BH1_METHODS = ("lora", "projection", "components", "hybrid-onehot-seg", "random")
SYNTHETIC_SURROGATES = ("lora", "projection", "components", "random")
SEEDS = (0, 1)


def bh1_campaigns(methods: tuple[str, ...] = BH1_METHODS) -> dict[str, list[str]]:
    from llmbo.benchmarks.protocol import ProtocolConfig
    from llmbo.benchmarks.runner import run_one

    out: dict[str, list[str]] = {}
    protocol = ProtocolConfig(n_initial=10, iterations=10)
    for method in methods:
        for seed in SEEDS:
            result = run_one("bh1", method, seed, template="names", protocol=protocol)
            out[f"bh1/{method}/{seed}"] = result.evaluated_ids
    return out


def synthetic_campaigns(
    surrogates: tuple[str, ...] = SYNTHETIC_SURROGATES,
) -> dict[str, list[str]]:
    sys.path.insert(0, str(TESTS))
    from conftest import build_tiny_model, synthetic_pool
    from llmbo import CandidateSpace, Optimizer
    from llmbo.optimizer import TableObjective
    from llmbo.surrogates.config import surrogate_config

    out: dict[str, list[str]] = {}
    frame = synthetic_pool(seed=0)
    space = CandidateSpace(frame, "{color} {animal} in the {place}")
    objective = TableObjective(space, "y")
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_model(Path(tmp) / "tiny"))
        for name in surrogates:
            for seed in SEEDS:
                # The registered surrogates' own configs, as recorded (the presets of the
                # same names choose more since: the lora preset adapts the output block).
                spec = surrogate_config(name)
                opt = Optimizer(space, spec, model=model, seed=seed, progress=False)
                first = [space.ids[i] for i in (seed, 200 + seed)]
                opt.tell(first, objective(space.rows(first)))
                opt.run(objective, 12)
                done = opt.history.sort_values("trial")
                out[f"synthetic/{name}/{seed}"] = done["candidate_id"].astype(str).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("bh1", "synthetic", "all"), default="all")
    parser.add_argument("--record", metavar="FILE", help="write the JSON here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result: dict[str, list[str]] = {}
    if args.part in ("synthetic", "all"):
        result.update(synthetic_campaigns())
    if args.part in ("bh1", "all"):
        result.update(bh1_campaigns())
    text = json.dumps(
        {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "campaigns": result},
        indent=1,
        sort_keys=True,
    )
    if args.record:
        Path(args.record).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
