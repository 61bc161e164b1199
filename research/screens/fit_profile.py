"""Where one deep-kernel fit's time goes (bh1, names template, default 60 points, 100 steps).

Times, each the median of 3: the whole ``fit`` (with the default ``gp_device="auto"``, so
on a GPU its GP algebra runs on the CPU); the training steps of the encoder and head alone
(a dummy loss); and the GP's marginal-likelihood steps alone on fixed features, on the
chosen device and on the CPU. The trained parameters are found from the autograd graph of
the surrogate's features, and the GP of the last measurement is built here the way the deep
kernel builds its plain Matérn GP, so the script needs only llmbo's public API (it times
``projection`` and ``lora`` methods without side, frozen or additive kernels).
On CUDA it also prints PyTorch's profile of one fit (host time per operator, kernel launches,
host syncs). Example (on a GPU machine)::

    python research/screens/fit_profile.py --device cuda --methods lora,projection
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import gpytorch
import numpy as np
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.settings import validate_input_scaling
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from llmbo.benchmarks.methods import METHODS
from llmbo.datasets import load_pool
from llmbo.surrogates.factory import make_surrogate
from llmbo.surrogates.likelihood import gaussian_likelihood


def synchronizer() -> Callable[[], None]:
    """Waits for queued CUDA work (a no-op without CUDA), so timings are complete."""
    if torch.cuda.is_available():
        return torch.cuda.synchronize
    return lambda: None


def trained_leaves(output: Tensor) -> list[Tensor]:
    """The tensors with ``requires_grad`` that ``output`` was computed from: the
    parameters a step on ``output`` trains (encoder adapters, soft tokens, head)."""
    leaves: list[Tensor] = []
    seen: set[int] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if variable is not None:
            leaves.append(variable)
        stack.extend(child for child, _ in node.next_functions)
    return leaves


def matern_gp(z: Tensor, y: Tensor, surrogate) -> SingleTaskGP:
    """The GP a deep kernel without a side kernel fits on features ``z``
    (``n x d``) and targets ``y`` (``n x 1``): Matérn-5/2 with an output scale, a constant
    mean, llmbo's Gaussian likelihood, standardised targets."""
    config = surrogate.config_
    if surrogate.side_featurizer is not None:
        raise SystemExit("fit_profile times deep kernels without a side kernel")
    with validate_input_scaling(False):  # features live in [-1, 1] by construction
        return SingleTaskGP(
            z,
            y,
            covar_module=ScaleKernel(MaternKernel(nu=2.5)),
            mean_module=ConstantMean(),
            likelihood=gaussian_likelihood(
                config.noise_lower_bound, noise_prior=surrogate.noise_prior
            ),
            outcome_transform=Standardize(m=1) if y.shape[0] > 1 else None,
        ).to(z.device)


def _median_seconds(fn: Callable[[], None], sync: Callable[[], None], reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _repeat(step: Callable[[], None], steps: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(steps):
            step()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lora,projection")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = synchronizer()
    pool = load_pool("bh1")
    space = pool.space("names")
    values = np.asarray(pool.values, dtype=np.float64)
    train = torch.from_numpy(np.random.default_rng(0).choice(len(space), args.n, replace=False))
    y = torch.from_numpy(values[train.numpy()])
    quiet = (gpytorch.settings.lazily_evaluate_kernels(False), gpytorch.settings.debug(False))

    for method in args.methods.split(","):
        options = {"deep_kernel.steps": args.steps, "cache_hidden_states": True}
        spec = METHODS.get(method)(pool, "minilm", args.device, "names", options)
        surrogate = make_surrogate(spec)
        surrogate.prepare(space)
        surrogate.fit(train, y)  # warm-up
        whole = _median_seconds(lambda s=surrogate: s.fit(train, y), sync)
        net = trained_leaves(surrogate.features(train))
        net_opt = torch.optim.AdamW(net, lr=1e-3)

        def net_step(s=surrogate, opt=net_opt) -> None:
            opt.zero_grad()
            s.features(train).sum().backward()
            opt.step()

        encoder_only = _median_seconds(_repeat(net_step, args.steps), sync)
        gp_only = {}
        for where in (device, torch.device("cpu")):
            z = surrogate.features(train).detach().to(where)
            gp = matern_gp(z, y.reshape(-1, 1).to(where), surrogate)
            mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
            gp_opt = torch.optim.AdamW(gp.parameters(), lr=0.05)
            gp.train()

            def gp_step(gp=gp, mll=mll, opt=gp_opt, z=z) -> None:
                with quiet[0], quiet[1]:
                    opt.zero_grad()
                    (-mll(gp(z), gp.train_targets)).backward()
                    opt.step()

            gp_only[where.type] = _median_seconds(_repeat(gp_step, args.steps), sync)
        print(
            f"{method} on {device.type}, n={args.n}, {args.steps} steps: fit {whole:.3f} s | "
            f"encoder+head steps alone {encoder_only:.3f} s | GP steps alone on "
            f"{device.type} {gp_only[device.type]:.3f} s, on cpu {gp_only['cpu']:.3f} s",
            flush=True,
        )
        if device.type == "cuda":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                surrogate.fit(train, y)
                sync()
            averages = prof.key_averages()
            print(averages.table(sort_by="self_cpu_time_total", row_limit=12))
            syncs = sum(e.count for e in averages if "Synchronize" in e.key or "Memcpy" in e.key)
            launches = sum(e.count for e in averages if "LaunchKernel" in e.key)
            print(f"{method}: {launches} kernel launches, {syncs} syncs/copies in one fit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
