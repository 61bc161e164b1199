"""Device side: one deep-kernel fit with the GP algebra on the CPU and on the GPU, and each
twice, on the tiny test model: how far apart are the losses and posterior means?"""

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, "tests")
from conftest import build_tiny_model, fit_on_cuda, synthetic_pool
from llmbo.space import CandidateSpace

model = str(build_tiny_model(Path(tempfile.mkdtemp())))
frame = synthetic_pool(seed=0).sample(n=60, random_state=0).reset_index(drop=True)
space = CandidateSpace(frame, "{color} {animal} in the {place}")
train = torch.arange(0, 60, 4)
y = torch.tensor(space.frame["y"].to_numpy()[train.numpy()], dtype=torch.float64)
for name in ("projection", "lora"):
    runs = []
    for choice in ("cpu", "encoder", "encoder", "cpu"):
        fitted = fit_on_cuda(model, space, train, y, name, choice)
        with torch.no_grad():
            mean = fitted.model.posterior(fitted.features).mean.cpu().flatten()
        runs.append((choice, torch.tensor(fitted.losses), mean))
    for i, j in ((0, 1), (1, 2), (0, 3)):
        (a, loss_a, mean_a), (b, loss_b, mean_b) = runs[i], runs[j]
        print(
            f"{name} {a} vs {b}: largest loss difference {(loss_a - loss_b).abs().max():.2e}, "
            f"final loss {loss_a[-1]:.4f} / {loss_b[-1]:.4f}, largest posterior-mean "
            f"difference {(mean_a - mean_b).abs().max():.2e} (sd of the means {mean_a.std():.2f})"
        )
