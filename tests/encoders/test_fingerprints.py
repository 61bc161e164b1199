"""DRFP, Morgan and one-hot featurizers on tiny spaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmbo.encoders.base import FEATURIZERS, Featurizer
from llmbo.encoders.fingerprints import DrfpFeaturizer, MorganFeaturizer, OneHotFeaturizer
from llmbo.errors import InputError
from llmbo.space import CandidateSpace


@pytest.fixture
def space() -> CandidateSpace:
    frame = pd.DataFrame(
        {
            "cid": ["a", "b", "c"],
            "ligand": ["c1ccc(P(c2ccccc2)c2ccccc2)cc1", "CCO", "c1ccc(P(c2ccccc2)c2ccccc2)cc1"],
            "base": ["[K+].[OH-]", "", "CCN(CC)CC"],
            "solvent": ["water", "THF", "water"],
            "temp": [25.0, 40.0, 60.0],
            "rxn": ["CCO.CC(=O)O>>CCOC(C)=O", "CCN.CC(=O)Cl>>CCNC(C)=O", "CCO.CC(=O)O>>CCOC(C)=O"],
        }
    )
    return CandidateSpace(frame, "{ligand} {base} {solvent} {temp}", id_column="cid")


def test_registered() -> None:
    for name, cls in [
        ("drfp", DrfpFeaturizer),
        ("morgan", MorganFeaturizer),
        ("onehot", OneHotFeaturizer),
    ]:
        assert FEATURIZERS.get(name) is cls
        assert issubclass(cls, Featurizer) and cls.binary


def test_drfp(space: CandidateSpace) -> None:
    pytest.importorskip("drfp")
    x = DrfpFeaturizer(n_bits=256).featurize(space)
    assert x.shape == (3, 256) and x.dtype == torch.float64
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x[0], x[2]) and not torch.equal(x[0], x[1])
    assert x.sum() > 0


def test_drfp_errors(space: CandidateSpace) -> None:
    pytest.importorskip("drfp")
    with pytest.raises(InputError, match="'reaction'"):
        DrfpFeaturizer(column="reaction").featurize(space)
    with pytest.raises(InputError, match="not a reaction SMILES"):
        DrfpFeaturizer(column="ligand").featurize(space)
    frame = space.frame.assign(rxn=["CCO>>CC(=O)O", "CCO.C1CC>>CC", "CCO>>CC"])
    bad = CandidateSpace(frame, "{cid}", id_column="cid")
    with pytest.raises(InputError, match=r"'rxn'.*'b'.*cannot parse: 'C1CC'"):
        DrfpFeaturizer().featurize(bad)


def test_morgan(space: CandidateSpace) -> None:
    pytest.importorskip("rdkit")
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    x = MorganFeaturizer(columns=["ligand", "base"], n_bits=512).featurize(space)
    assert x.shape == (3, 1024) and x.dtype == torch.float64
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=512)
    expected = gen.GetFingerprintAsNumPy(Chem.MolFromSmiles("CCO")).astype(np.float64)
    np.testing.assert_array_equal(x[1, :512].numpy(), expected)
    assert x[1, 512:].sum() == 0  # empty SMILES = no component
    assert torch.equal(x[0, :512], x[2, :512])


def test_morgan_errors(space: CandidateSpace) -> None:
    pytest.importorskip("rdkit")
    with pytest.raises(InputError, match="columns"):
        MorganFeaturizer().featurize(space)
    with pytest.raises(InputError, match="'catalyst'"):
        MorganFeaturizer(columns=["catalyst"]).featurize(space)
    with pytest.raises(InputError, match=r"'solvent'.*cannot parse"):
        MorganFeaturizer(columns="solvent").featurize(space)


def test_onehot_explicit_and_default(space: CandidateSpace) -> None:
    x = OneHotFeaturizer(columns=["solvent"]).featurize(space)
    # Categories sorted: THF, water.
    assert x.dtype == torch.float64
    np.testing.assert_array_equal(x.numpy(), [[0, 1], [1, 0], [0, 1]])
    default = OneHotFeaturizer().featurize(space)
    # ligand (2) + base (3) + solvent (2) + rxn (2); id column and numeric temp excluded.
    assert default.shape == (3, 9)
    assert torch.all(default.sum(dim=1) == 4)


def test_onehot_missing_column(space: CandidateSpace) -> None:
    with pytest.raises(InputError, match="'additive'"):
        OneHotFeaturizer(columns=["additive"]).featurize(space)


def test_fingerprints_on_bh1() -> None:
    pytest.importorskip("drfp")
    from llmbo.datasets import load_pool

    pool = load_pool("bh1")
    space = pool.space()
    morgan = MorganFeaturizer(columns=pool.smiles_columns).featurize(space)
    assert morgan.shape == (790, 4 * 2048)
    onehot = OneHotFeaturizer(columns=pool.smiles_columns).featurize(space)
    assert onehot.shape == (790, 3 + 4 + 3 + 22)
    assert torch.all(onehot.sum(dim=1) == 4)
    # DRFP costs ~50 ms per BH reaction; a slice keeps this test fast.
    subset = CandidateSpace(pool.frame.iloc[:8], "{reaction_id}", id_column="reaction_id")
    drfp = DrfpFeaturizer().featurize(subset)
    assert drfp.shape == (8, 2048)
    assert len({tuple(row.tolist()) for row in drfp}) == 8


def test_components_are_one_hot_blocks_then_codes(space: CandidateSpace) -> None:
    from llmbo.encoders.fingerprints import ComponentsFeaturizer

    featurizer = ComponentsFeaturizer(columns=["solvent", "base"])
    assert FEATURIZERS.get("components") is ComponentsFeaturizer
    x = featurizer.featurize(space)
    # solvent: THF, water; base: "", "CCN(CC)CC", "[K+].[OH-]" (sorted as text).
    np.testing.assert_array_equal(
        x.numpy(),
        [[0, 1, 0, 0, 1, 1, 2], [1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1, 1]],
    )
    assert featurizer.n_components_ == 2 and x.dtype == torch.float64
    one_hot = OneHotFeaturizer(columns=["solvent", "base"]).featurize(space)
    assert torch.equal(x[:, :5], one_hot)
