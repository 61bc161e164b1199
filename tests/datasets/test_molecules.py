"""Molecule pools (ESOL, FreeSolv): sizes, direction, templates, ids and alignment of values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmbo import datasets as ds
from llmbo.datasets import MOLECULE_POOL_NAMES, POOL_NAMES, POOLS, load_pool, pool_maximizes
from llmbo.errors import InputError, MissingDependencyError
from llmbo.space import CandidateSpace

try:
    ds.gauche_file("property_prediction", "ESOL.csv")
except MissingDependencyError:  # pragma: no cover - gauche is a dev dependency
    pytest.skip("gauche is not installed", allow_module_level=True)

#: (table rows in gauche 0.1.6, molecules in the pool, maximised, target column).
EXPECTED = {
    "esol": (1128, 1123, True, "log_solubility"),
    "freesolv": (642, 642, False, "hydration_free_energy"),
}


@pytest.fixture(scope="module", params=MOLECULE_POOL_NAMES)
def pool(request: pytest.FixtureRequest) -> ds.CandidatePool:
    return load_pool(request.param)


def test_molecule_pools_are_registered_after_the_reaction_pools() -> None:
    assert MOLECULE_POOL_NAMES == ("esol", "freesolv")
    assert POOL_NAMES[-2:] == MOLECULE_POOL_NAMES
    assert {"esol", "freesolv"} <= set(POOLS.names())
    assert load_pool("ESOL").name == "esol"  # names are case-insensitive
    with pytest.raises(InputError, match="Unknown pool 'tox21'"):
        load_pool("tox21")


def test_sizes_and_direction(pool: ds.CandidatePool) -> None:
    rows, size, maximize, target = EXPECTED[pool.name]
    spec = next(d for d in ds.MOLECULE_POOL_DEFS if d.name == pool.name)
    raw = pd.read_csv(ds.gauche_file("property_prediction", spec.filename))
    assert len(raw) == rows
    assert len(pool) == len(pool.values) == len(pool.ids) == size
    # Rows with the same SMILES string are merged: one candidate per distinct SMILES.
    assert raw[spec.smiles_column].nunique() == size
    assert (pool.maximize, pool.target, pool.kind) == (maximize, target, "molecule")
    assert pool_maximizes(pool.name) is maximize
    assert pool.smiles_columns == ("smiles",) and pool.id_column == "molecule_id"
    assert list(pool.frame.columns) == ["molecule_id", "smiles", "name", target]
    direction = "maximise" if maximize else "minimise"
    assert repr(pool) == (
        f"CandidatePool({pool.name!r}, {size} molecules, {direction} {target!r}, "
        "templates=['smiles', 'names'])"
    )


def test_reaction_pools_are_maximised_without_loading() -> None:
    for name in ds.REACTION_POOL_NAMES:
        assert pool_maximizes(name) is True
    with pytest.raises(InputError):
        pool_maximizes("nope")


def test_templates_render(pool: ds.CandidatePool) -> None:
    assert set(pool.templates) == {"smiles", "names"}
    assert pool.default_template == "smiles"
    smiles, names = pool.space(), pool.space("names")
    assert isinstance(smiles, CandidateSpace)
    assert len(smiles) == len(names) == len(pool)
    assert smiles.texts == pool.frame["smiles"].tolist()
    assert names.texts == pool.frame["name"].tolist()
    assert all(t and t == t.strip() for t in names.texts)  # ESOL names come with stray spaces
    with pytest.raises(InputError, match="no template 'procedure'"):
        pool.space("procedure")


def test_known_rows() -> None:
    esol = load_pool("esol").frame.set_index("name")
    assert esol.loc["Amigdalin", "log_solubility"] == pytest.approx(-0.77)
    # Mannitol and sorbitol are written with the same SMILES (no stereo): one candidate with
    # both names and the mean of their values (0.06 and 1.09).
    assert esol.loc["mannitol / Sorbitol", "log_solubility"] == pytest.approx(0.575)
    assert esol.loc["mannitol / Sorbitol", "smiles"] == "OCC(O)C(O)C(O)C(O)CO"
    freesolv = load_pool("freesolv")
    frame = freesolv.frame.set_index("name")
    assert frame.loc["methanesulfonyl chloride", "hydration_free_energy"] == pytest.approx(-4.87)
    assert freesolv.values.min() == pytest.approx(-25.47)  # the best FreeSolv value
    assert freesolv.values.max() == pytest.approx(3.43)


def test_ids_unique_stable_and_pinned(pool: ds.CandidatePool) -> None:
    space = pool.space("names")
    assert space.ids == pool.ids
    assert len(set(pool.ids)) == len(pool)
    assert all(i.startswith(f"{pool.name}-") for i in pool.ids)
    # Stable: hashed from the SMILES as written, so any order gives the same ids.
    shuffled = pool.frame.sample(frac=1.0, random_state=0)
    assert ds.content_ids(shuffled, ("smiles",), pool.name) == shuffled["molecule_id"].tolist()
    assert load_pool(pool.name).ids == pool.ids
    first = {"esol": "esol-be24803b659d", "freesolv": "freesolv-20586713a5d3"}
    assert pool.ids[0] == first[pool.name]  # ids are part of stored studies


def test_values_aligned_with_space(pool: ds.CandidatePool) -> None:
    space = pool.space()
    values = pool.values
    assert values.dtype == np.float64 and np.all(np.isfinite(values))
    for i in (0, len(space) // 2, len(space) - 1):
        assert space.rows([space.ids[i]])[pool.target].iloc[0] == values[i]


def test_descriptions_cite_sources() -> None:
    esol, freesolv = load_pool("esol"), load_pool("freesolv")
    assert "Delaney" in esol.description and "2004" in esol.description
    assert "Mobley & Guthrie" in freesolv.description and "2014" in freesolv.description
    assert "minimised" in freesolv.description and "maximised" in esol.description
    for name in MOLECULE_POOL_NAMES:
        assert "gauche" in (POOLS.get(name).__doc__ or "")


def test_featurizer_options_on_a_molecule_pool(pool: ds.CandidatePool) -> None:
    assert ds.pool_featurizer_options(pool, "morgan") == {"columns": ["smiles"]}
    for name in ("drfp", "onehot", "components"):
        with pytest.raises(InputError, match=r"molecule pool.*morgan"):
            ds.pool_featurizer_options(pool, name)


def test_pool_checks_its_fields() -> None:
    frame = pd.DataFrame({"molecule_id": ["a", "b"], "smiles": ["C", "CC"], "y": [1.0, 2.0]})
    common = {"name": "p", "description": "", "frame": frame, "target": "y"}
    pool = ds.CandidatePool(
        **common,
        templates={"smiles": "{smiles}"},
        smiles_columns=("smiles",),
        maximize=False,
        kind="molecule",
        default_template="smiles",
        id_column="molecule_id",
    )
    assert pool.space().texts == ["C", "CC"]
    with pytest.raises(InputError, match="default template"):
        ds.CandidatePool(**common, templates={"smiles": "{smiles}"}, id_column="molecule_id")
    with pytest.raises(InputError, match="kind"):
        ds.CandidatePool(
            **common,
            templates={"smiles": "{smiles}"},
            kind="protein",  # type: ignore[arg-type]
            default_template="smiles",
            id_column="molecule_id",
        )
    with pytest.raises(InputError, match="no column 'rxn'"):
        ds.CandidatePool(
            **common,
            templates={"smiles": "{smiles}"},
            smiles_columns=("rxn",),
            default_template="smiles",
            id_column="molecule_id",
        )
