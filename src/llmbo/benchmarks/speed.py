"""Wall time and memory of one BO iteration (fit + scoring the remaining pool).

Measures, side by side in one process, benchmark methods (``static``, ``projection``,
``lora``, ``lora-layer``... built exactly as ``llmbo bench`` builds them) on a reaction pool
at several training-set sizes, the naive reference of each LoRA method (no cache: every
step and every pool pass runs the full transformer), and how an iteration scales with
pool size on a synthetic text pool.
Results are appended to a CSV; run ``python benchmarks/speed.py --help``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmbo.acquisition import select_candidates
from llmbo.benchmarks.runner import cpu_description
from llmbo.errors import InputError
from llmbo.space import CandidateSpace
from llmbo.surrogates import Surrogate, SurrogateConfig, make_surrogate
from llmbo.surrogates.deep_kernel import DeepKernelConfig

COLUMNS = [
    "experiment",
    "surrogate",
    "device",
    "n_train",
    "pool_size",
    "sec_per_iter",
    "reference_sec_per_iter",
    "speedup",
    "fit_sec",
    "score_sec",
    "peak_mem_mb",
    "prepare_sec",
    "template",
    "model",
    "steps",
    "threads",
    "repeats",
    "cpu",
    "torch",
    "date",
]


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak memory (MB) while the block runs: CUDA allocator peak, or process peak RSS.

    On Linux the kernel's peak-RSS counter is reset before the block and read after it, so
    nothing runs beside the timed code. Elsewhere a thread samples the RSS every 50 ms (it
    takes the GIL, so timings made under it are slightly pessimistic).
    """
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out["mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        return
    if _reset_peak_rss():
        yield out
        out["mb"] = _peak_rss_mb()
        return
    import psutil

    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["mb"] = max(peak[0], proc.memory_info().rss) / 2**20


_PROC_SELF = Path("/proc/self")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set size of this process (Linux >= 4.0)."""
    try:
        (_PROC_SELF / "clear_refs").write_text("5")
        return _peak_rss_mb() > 0
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MB (``VmHWM``), 0 if unknown."""
    try:
        for line in (_PROC_SELF / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def one_iteration(
    surrogate: Surrogate, train_idx: torch.Tensor, train_y: torch.Tensor, pool_size: int
) -> tuple[float, float]:
    """Fit on the training rows and pick the next candidate from the rest: (fit s, score s)."""
    mask = torch.ones(pool_size, dtype=torch.bool)
    mask[train_idx] = False
    available = torch.nonzero(mask).flatten()
    sync = _synchronizer()
    start = time.perf_counter()
    fitted = surrogate.fit(train_idx, train_y)
    sync()
    mid = time.perf_counter()
    select_candidates(fitted, available, 1, best_f=float(train_y.max()), seed=0)
    sync()
    return mid - start, time.perf_counter() - mid


def _synchronizer() -> Callable[[], None]:
    if torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def measure(
    surrogate: Surrogate,
    space: CandidateSpace,
    values: np.ndarray,
    n_train: int,
    *,
    repeats: int,
    seed: int = 0,
) -> dict[str, float]:
    """Median seconds per iteration over ``repeats`` (after preparing the surrogate)."""
    start = time.perf_counter()
    surrogate.prepare(space, progress=True)
    prepare = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    train = torch.from_numpy(rng.choice(len(space), n_train, replace=False))
    y = torch.from_numpy(values[train.numpy()].astype(np.float64))
    device = getattr(getattr(surrogate, "encoder", None), "device", torch.device("cpu"))
    fits, scores, peaks = [], [], []
    for _ in range(repeats):
        torch.manual_seed(seed)
        with peak_memory(device) as mem:
            fit_s, score_s = one_iteration(surrogate, train, y, len(space))
        fits.append(fit_s)
        scores.append(score_s)
        peaks.append(mem["mb"])
    total = [f + s for f, s in zip(fits, scores, strict=True)]
    return {
        "sec_per_iter": statistics.median(total),
        "fit_sec": statistics.median(fits),
        "score_sec": statistics.median(scores),
        "peak_mem_mb": max(peaks),
        "prepare_sec": prepare,
    }


def synthetic_space(size: int, seed: int = 0) -> tuple[CandidateSpace, np.ndarray]:
    """A pool of ``size`` short distinct texts with a smooth objective (for scaling runs)."""
    rng = np.random.default_rng(seed)
    adjectives = [
        "red",
        "green",
        "blue",
        "hot",
        "cold",
        "fast",
        "slow",
        "big",
        "small",
        "old",
        "new",
        "dark",
        "light",
        "soft",
        "hard",
        "wet",
        "dry",
        "loud",
        "calm",
        "rich",
    ]
    nouns = [
        "cat",
        "dog",
        "fox",
        "owl",
        "bee",
        "eel",
        "yak",
        "emu",
        "ant",
        "bat",
        "cow",
        "pig",
        "hen",
        "elk",
        "ram",
        "doe",
        "jay",
        "koi",
        "gnu",
        "asp",
    ]
    places = ["forest", "desert", "river", "city", "farm", "sea", "hill", "lake", "cave", "field"]
    n_rep = int(np.ceil(size / (len(adjectives) * len(nouns) * len(places))))
    rows = []
    for k in range(n_rep):
        for a in adjectives:
            for n in nouns:
                for p in places:
                    rows.append({"a": a, "n": n, "p": p, "k": k})
                    if len(rows) == size:
                        break
                if len(rows) == size:
                    break
            if len(rows) == size:
                break
    frame = pd.DataFrame(rows)
    values = (
        frame["a"].map({a: i for i, a in enumerate(adjectives)}).to_numpy() * 0.1
        + (frame["n"] == "fox").to_numpy() * 2.0
        + rng.normal(0, 0.1, len(frame))
    )
    space = CandidateSpace(frame, "a {a} {n} near the {p}, batch {k}", name=f"synthetic-{size}")
    return space, values


def method_config(
    method: str,
    pool: Any,
    *,
    model: str,
    device: str | None,
    template: str,
    steps: int,
    cached: bool = True,
    gp_device: str = "auto",
    space: CandidateSpace | None = None,
) -> SurrogateConfig:
    """The surrogate config ``llmbo bench`` uses for ``method`` on ``pool`` (``cached=False``:
    its naive reference without the hidden-state cache; ``gp_device``: where a deep
    kernel's GP algebra runs). Without a pool, the method's preset is resolved on the
    columns detected in ``space``, as ``Optimizer(space, method)`` would. The timing
    options apply to the surrogates that have them (deep kernels)."""
    import dataclasses

    from llmbo.benchmarks.methods import METHODS
    from llmbo.presets import PRESETS, TableColumns

    chosen = METHODS.get(method)
    if pool is not None:
        spec = chosen(pool, model, device, template)
    else:
        if space is None or chosen.preset is None:
            raise ValueError(f"{method}: give a pool, or a space and a method with a preset.")
        columns = TableColumns.detect(space)
        spec = PRESETS.get(chosen.preset).resolve(columns, model=model, device=device).spec
    options: dict[str, Any] = {"deep_kernel.steps": steps, "cache_hidden_states": cached}
    if gp_device != "auto":
        options["deep_kernel.gp_device"] = gp_device
    fields = {f.name for f in dataclasses.fields(spec)}
    return spec.updated({k: v for k, v in options.items() if k.split(".")[0] in fields})


def _is_deep_kernel(method: str, pool: Any, build: dict[str, Any]) -> bool:
    """Whether ``method`` builds a deep-kernel GP (the only kind with a ``gp_device``)."""
    spec = method_config(method, pool, **build)
    return spec.name in ("projection", "lora") or bool(getattr(spec, "soft_tokens", 0))


def _append(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    common = {
        "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
        "model": args.model,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": cpu_description(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(args.output)
    n_trains = [int(n) for n in args.n_train.split(",") if n]
    ref_n = {int(n) for n in args.reference_n_train.split(",") if n}
    if args.surrogates:
        for benchmark in [b for b in args.benchmark.split(",") if b]:
            _time_methods(args, benchmark, common, out, n_trains, ref_n)
    _time_pool_sizes(args, common, out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--benchmark", default="bh1", help="pool(s) to time the methods on, e.g. bh1,suzuki,esol"
    )
    parser.add_argument(
        "--template", default=None, help="pool template (default: each pool's own default)"
    )
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--surrogates",
        default="static,projection,lora,lora-layer",
        help="benchmark methods to time (see llmbo bench --list-methods)",
    )
    parser.add_argument(
        "--gp-devices",
        default="auto",
        help="where the deep kernels' GP algebra runs, e.g. 'auto,encoder' to time both "
        "(rows other than 'auto' are labelled surrogate{gp_device=...})",
    )
    parser.add_argument("--n-train", default="10,30,60")
    parser.add_argument("--steps", type=int, default=DeepKernelConfig().steps)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the naive uncached iteration of each LoRA method (slow)",
    )
    parser.add_argument("--reference-n-train", default="60")
    parser.add_argument(
        "--pool-sizes", default="", help="synthetic scaling run, e.g. 1000,10000,100000"
    )
    parser.add_argument("--scaling-surrogates", default="projection,lora")
    parser.add_argument("--scaling-n-train", default="30")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="benchmarks/results/speed.csv")
    return parser


def _time_methods(
    args: argparse.Namespace,
    benchmark: str,
    common: dict[str, Any],
    out: Path,
    n_trains: list[int],
    ref_n: set[int],
) -> None:
    """Time each benchmark method (per GP placement asked for) on the benchmark pool, one
    row per training-set size, and the naive reference of each LoRA method at ``ref_n``.
    A method that does not apply to the pool (e.g. components on a molecule pool) is
    skipped with a line saying so."""
    from llmbo.benchmarks.methods import METHODS
    from llmbo.datasets import load_pool

    pool = load_pool(benchmark)
    template = args.template or pool.default_template
    space = pool.space(template)
    values = np.asarray(pool.values, dtype=np.float64)
    build = {
        "model": args.model,
        "device": args.device,
        "template": template,
        "steps": args.steps,
    }
    names = []
    for name in args.surrogates.split(","):
        reason = METHODS.get(name).skip_reason(pool)
        if reason:
            print(f"{benchmark}: skipped {reason}", flush=True)
        else:
            names.append(name)
    gp_devices = [v for v in args.gp_devices.split(",") if v]
    runs = [
        (name, gp_device)
        for name in names
        for gp_device in (gp_devices if _is_deep_kernel(name, pool, build) else ["auto"])
    ]
    for name, gp_device in runs:
        spec = method_config(name, pool, **build, gp_device=gp_device)
        label = name if gp_device == "auto" else f"{name}{{gp_device={gp_device}}}"
        surrogate = make_surrogate(spec)
        reference = None
        if args.reference and spec.name == "lora" and ref_n & set(n_trains):
            reference = make_surrogate(
                method_config(name, pool, **build, cached=False, gp_device=gp_device)
            )
        for n in n_trains:
            res = measure(surrogate, space, values, n, repeats=args.repeats)
            row = {
                **common,
                **res,
                "experiment": benchmark,
                "surrogate": label,
                "n_train": n,
                "pool_size": len(space),
                "template": template,
            }
            if reference is not None and n in ref_n:
                ref = measure(reference, space, values, n, repeats=1)
                row["reference_sec_per_iter"] = ref["sec_per_iter"]
                row["speedup"] = ref["sec_per_iter"] / res["sec_per_iter"]
            _append(out, [row])
            print(_fmt(row), flush=True)


def _time_pool_sizes(args: argparse.Namespace, common: dict[str, Any], out: Path) -> None:
    """Time the scaling methods on synthetic pools of each ``--pool-sizes`` size."""
    for size in [int(s) for s in args.pool_sizes.split(",") if s]:
        space, values = synthetic_space(size)
        for name in args.scaling_surrogates.split(","):
            try:
                spec = method_config(
                    name,
                    None,
                    model=args.model,
                    device=args.device,
                    template="synthetic",
                    steps=args.steps,
                    space=space,
                )
            except InputError as exc:  # e.g. morgan: the synthetic texts hold no SMILES
                print(f"synthetic-pool: skipped {name}: {exc}", flush=True)
                continue
            surrogate = make_surrogate(spec)
            for n in [int(v) for v in args.scaling_n_train.split(",") if v]:
                res = measure(surrogate, space, values, n, repeats=args.repeats)
                row = {
                    **common,
                    **res,
                    "experiment": "synthetic-pool",
                    "surrogate": name,
                    "n_train": n,
                    "pool_size": size,
                    "template": "synthetic",
                }
                _append(out, [row])
                print(_fmt(row), flush=True)
            del surrogate


def _fmt(row: dict[str, Any]) -> str:
    ref = row.get("reference_sec_per_iter")
    extra = f"  reference {ref:.2f}s ({row['speedup']:.1f}x)" if ref else ""
    return (
        f"{row['experiment']:>15} {row['surrogate']:>10} n={row['n_train']:<4} pool={row['pool_size']:<7}"
        f" {row['sec_per_iter']:.3f}s/iter (fit {row['fit_sec']:.3f}, score {row['score_sec']:.3f})"
        f" peak {row['peak_mem_mb']:.0f}MB prepare {row['prepare_sec']:.1f}s{extra}"
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
