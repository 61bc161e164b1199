"""Tanimoto kernel against the closed form, on float32 and float64."""

from __future__ import annotations

import math

import gpytorch
import pytest
import torch

from llmbo.surrogates.kernels import TanimotoKernel, tanimoto_similarity

DTYPES = [torch.float32, torch.float64]


def closed_form(a: torch.Tensor, b: torch.Tensor) -> float:
    """Tanimoto of two vectors: <a,b> / (|a|^2 + |b|^2 - <a,b>), 1 for two zero vectors."""
    dot = float(a @ b)
    denom = float(a @ a + b @ b) - dot
    return 1.0 if denom == 0 else dot / denom


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_values(dtype: torch.dtype) -> None:
    x = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=dtype)
    k = TanimotoKernel()(x).to_dense()
    # |A∩B| / |A∪B|: rows 0,1 share 1 of 3 bits; row 3 covers everything.
    expected = torch.tensor(
        [
            [1.0, 1 / 3, 0.0, 0.5],
            [1 / 3, 1.0, 0.0, 0.5],
            [0.0, 0.0, 1.0, 0.0],
            [0.5, 0.5, 0.0, 1.0],
        ],
        dtype=dtype,
    )
    assert k.dtype == dtype
    torch.testing.assert_close(k, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_counts_match_closed_form(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(0, 4, (5, 7), generator=g).to(dtype)
    x2 = torch.randint(0, 4, (3, 7), generator=g).to(dtype)
    x2[0] = 0
    k = TanimotoKernel()(x1, x2).to_dense()
    expected = torch.tensor([[closed_form(a.double(), b.double()) for b in x2] for a in x1])
    torch.testing.assert_close(k, expected.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_diag_and_batch(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (2, 6, 9), generator=g).to(dtype)
    x[0, 0] = 0
    kernel = TanimotoKernel()
    full = kernel(x).to_dense()
    assert full.shape == (2, 6, 6)
    diag = kernel(x, diag=True)
    assert diag.shape == (2, 6)
    torch.testing.assert_close(diag, torch.ones(2, 6, dtype=dtype))
    torch.testing.assert_close(torch.diagonal(full, dim1=-2, dim2=-1), diag)
    y = torch.randint(0, 2, (2, 6, 9), generator=g).to(dtype)
    torch.testing.assert_close(
        kernel(x, y, diag=True), torch.diagonal(kernel(x, y).to_dense(), dim1=-2, dim2=-1)
    )


def test_last_dim_is_batch_shape() -> None:
    x = torch.rand(4, 3)
    out = tanimoto_similarity(x.transpose(-1, -2).unsqueeze(-1), x.transpose(-1, -2).unsqueeze(-1))
    k = TanimotoKernel().forward(x, x, last_dim_is_batch=True)
    assert k.shape == (3, 4, 4)
    torch.testing.assert_close(k, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_is_psd(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(40, 64, generator=g) < 0.2).to(dtype)
    x[:3] = 0  # all-zero rows must not break anything
    k = TanimotoKernel()(x).to_dense().double()
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-6


def test_zero_rows_have_finite_gradients() -> None:
    x = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    k = tanimoto_similarity(x, x)
    k.sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(k.detach(), torch.ones(3, 3, dtype=torch.float64))


def test_in_an_exact_gp() -> None:
    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, likelihood):
            super().__init__(x, y, likelihood)
            self.mean = gpytorch.means.ConstantMean()
            self.covar = gpytorch.kernels.ScaleKernel(TanimotoKernel())

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean(x), self.covar(x))

    g = torch.Generator().manual_seed(3)
    x = (torch.rand(12, 16, generator=g) < 0.3).double()
    y = x[:, :4].sum(-1)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    model = GP(x, y, likelihood).double()
    model.eval()
    with torch.no_grad():
        post = model(x[:5])
    assert post.mean.shape == (5,) and torch.all(post.variance > 0)


def test_component_kernel_against_hand_computed_values() -> None:
    from llmbo.surrogates.kernels import component_kernel

    # Two components with 2 and 3 categories: one-hot blocks, then the codes.
    codes = torch.tensor([[0, 0], [0, 1], [1, 2]], dtype=torch.float64)
    onehot = torch.tensor([[1, 0, 1, 0, 0], [1, 0, 0, 1, 0], [0, 1, 0, 0, 1]], dtype=torch.float64)
    x = torch.cat([torch.zeros(3, 2, dtype=torch.float64), onehot, codes], dim=1)
    kernel = component_kernel(7, 2, offset=2).double()  # two leading columns it must ignore
    shared, additive = kernel.kernels
    shared.outputscale = 2.0
    additive.outputscale = 0.5
    first, second = additive.base_kernel.kernels
    first.outputscale, first.base_kernel.lengthscale = 1.0, 0.5
    second.outputscale, second.base_kernel.lengthscale = 3.0, 2.0
    k = kernel(x).to_dense()

    def expected(i: int, j: int) -> float:
        same = (codes[i] == codes[j]).tolist()
        s = sum(same)
        tanimoto = s / (2 * 2 - s)  # s of C = 2 components shared
        per = [1.0 if same[0] else math.exp(-1 / 0.5), 1.0 if same[1] else math.exp(-1 / 2.0)]
        return 2.0 * tanimoto + 0.5 * (1.0 * per[0] + 3.0 * per[1])

    want = torch.tensor([[expected(i, j) for j in range(3)] for i in range(3)], dtype=torch.float64)
    torch.testing.assert_close(k, want)
    assert torch.linalg.eigvalsh(k).min() > 0  # a valid covariance on distinct candidates
    with pytest.raises(ValueError, match="one-hot columns followed by 3 codes"):
        component_kernel(4, 3)
