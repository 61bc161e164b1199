"""Registered presets: the named, measured surrogate configurations users and benchmarks share.

A preset turns what a candidate table offers (:class:`TableColumns`: its categorical
columns, SMILES columns, reaction-SMILES column, the text between template fields) into a
surrogate config and acquisition settings (:class:`PresetChoice`). The benchmark methods of
``llmbo bench`` are built from the same presets, so a row of the benchmark table names a
configuration a user can pass as ``Optimizer(space, "NAME")`` or ``--surrogate NAME``::

    from llmbo.presets import PRESETS, TableColumns

    choice = PRESETS.get("components-or-lora").resolve(TableColumns.detect(space))
    choice.spec, choice.acquisition, choice.reason

:data:`DEFAULT_PRESET` is the library and CLI default. It was chosen by the rule written in
``benchmarks/README.md`` ("Choosing the default configuration") from the all-pool table.

On a user's table, columns are detected (:meth:`TableColumns.detect`): a template column is
*categorical* when its values repeat (at most half as many distinct values as rows, e.g.
the ligand of a reaction screen); a column holds *SMILES* when RDKit (optional) parses a
sample of its values; a column holds *reaction SMILES* when its values contain ``>>``. A
benchmark pool declares them instead (:meth:`TableColumns.from_pool`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmbo.errors import InputError
from llmbo.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from llmbo.datasets import CandidatePool
    from llmbo.space import CandidateSpace
    from llmbo.surrogates.config import SurrogateConfig

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "Preset",
    "PresetChoice",
    "TableColumns",
    "product_presets",
    "register_preset",
    "register_variant_preset",
    "resolve_surrogate",
]

#: The library and CLI default (see ``benchmarks/README.md``, "Choosing the default").
DEFAULT_PRESET = "components-or-lora"

#: Rows sampled to decide whether a column holds SMILES.
_SMILES_SAMPLE = 50


@dataclass(frozen=True)
class TableColumns:
    """What a candidate table offers a preset besides its texts.

    Attributes:
        fields: The template's columns in order (empty for a callable template).
        categorical: Template columns whose values repeat (the components of a combinatorial
            screen); the ``onehot`` and ``components`` kernels read them.
        smiles: Columns holding one SMILES each (fingerprinted by ``morgan``).
        reaction_smiles: A column of reaction SMILES (read by ``drfp``), or ``None``.
        separator: The text between consecutive template fields when it is always the same
            (segment pooling splits a text there), else ``None``.
        kind: ``"reaction"`` or ``"molecule"`` for a benchmark pool, ``"table"`` for a
            user's table.
        constant: Template columns with a single value (they tell no candidates apart).
    """

    fields: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    smiles: tuple[str, ...] = ()
    reaction_smiles: str | None = None
    separator: str | None = None
    kind: str = "table"
    constant: tuple[str, ...] = ()

    @property
    def all_categorical(self) -> bool:
        """Every template field that varies is categorical (a screen of choices)."""
        return bool(self.categorical) and set(self.fields) <= {*self.categorical, *self.constant}

    def describe(self) -> str:
        """One line naming what was found, for logs and messages."""
        parts = [
            f"categorical {list(self.categorical)}" if self.categorical else "no categorical",
            f"SMILES {list(self.smiles)}" if self.smiles else "no SMILES",
        ]
        if self.reaction_smiles:
            parts.append(f"reaction SMILES {self.reaction_smiles!r}")
        return f"template fields {list(self.fields)}; " + ", ".join(parts) + " columns"

    @classmethod
    def from_pool(cls, pool: CandidatePool, template: str | None = None) -> TableColumns:
        """The columns a benchmark pool declares.

        A reaction pool's texts (every template) are made from its components, so its
        component SMILES columns are both its fields and its categorical columns, and
        ``rxn`` its reaction SMILES; a molecule pool's fields are its template's.
        """
        from llmbo.datasets import TEMPLATE_SEPARATORS
        from llmbo.space import template_fields

        name = pool.default_template if template is None else template
        if pool.kind == "reaction":
            fields = tuple(pool.smiles_columns)
        else:
            fields = tuple(template_fields(pool.templates.get(name, "")))
        reaction = pool.kind == "reaction"
        return cls(
            fields=fields,
            categorical=fields if reaction else (),
            smiles=tuple(pool.smiles_columns),
            reaction_smiles="rxn" if reaction and "rxn" in pool.frame.columns else None,
            separator=TEMPLATE_SEPARATORS.get(name),
            kind=pool.kind,
        )

    @classmethod
    def detect(cls, space: CandidateSpace) -> TableColumns:
        """Detect the columns of a user's space (see the module docstring for the rules)."""
        from llmbo.space import template_fields

        frame = space.frame
        template = space.template
        fields = tuple(template_fields(template)) if isinstance(template, str) else ()
        categorical = tuple(f for f in fields if _repeats(frame[f]))
        constant = tuple(f for f in fields if frame[f].nunique(dropna=False) == 1)
        smiles, reaction = _smiles_columns(frame)
        return cls(
            fields=fields,
            categorical=categorical,
            constant=constant,
            smiles=smiles,
            reaction_smiles=reaction,
            separator=_separator(template) if isinstance(template, str) else None,
        )


def _repeats(column: pd.Series) -> bool:
    """Whether a column's values repeat enough to be categorical (≤ half distinct, ≥ 2)."""
    values = column.dropna()
    distinct = values.nunique()
    return len(values) >= 2 and 2 <= distinct <= len(values) / 2


def _separator(template: str) -> str | None:
    """The text that starts every literal between consecutive fields (``", "`` in
    ``"{a}, {b}, {c}"``, ``"; "`` in ``"A: {a}; B: {b}"``; not a word, nor spaces alone),
    or ``None`` if there is none."""
    import string

    # parse() yields (literal before a field, field, ...): the literals before the second
    # and later fields lie between fields.
    parsed = list(string.Formatter().parse(template))
    between = [parsed[i][0] for i in range(1, len(parsed)) if parsed[i][1] is not None]
    common = between[0] if between else ""
    for text in between[1:]:
        while not text.startswith(common):
            common = common[:-1]
    common = common.rstrip("".join(c for c in set(common) if c.isalnum()))  # whole words
    if not common.strip() and "\n" not in common:
        return None  # spaces alone also split the values' own words
    return common


def _smiles_columns(frame: pd.DataFrame) -> tuple[tuple[str, ...], str | None]:
    """(molecule SMILES columns, a reaction SMILES column) of ``frame``; none without RDKit."""
    from llmbo import _imports

    if not _imports.is_available("rdkit"):
        logger.info("RDKit is not installed: SMILES columns are not detected.")
        return (), None
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecules: list[str] = []
    reaction: str | None = None
    try:
        for name in frame.columns:
            values = frame[name].dropna()
            if values.empty or not all(isinstance(v, str) for v in values.head(_SMILES_SAMPLE)):
                continue
            sample = [v for v in values.drop_duplicates().head(_SMILES_SAMPLE) if v.strip()]
            if not sample or any(" " in v.strip() for v in sample):
                continue
            if all(">>" in v for v in sample):
                if reaction is None:
                    reaction = str(name)
                continue
            if all(Chem.MolFromSmiles(v) is not None for v in sample):
                molecules.append(str(name))
    finally:
        RDLogger.EnableLog("rdApp.*")
    return tuple(molecules), reaction


@dataclass(frozen=True)
class PresetChoice:
    """What a preset resolved to on one table.

    Attributes:
        preset: The preset's name.
        spec: The surrogate config.
        acquisition: Dotted acquisition settings the preset adds
            (``{"acquisition.outcome_power": 2.0}``); the user's own settings win.
        reason: One sentence saying what was chosen and why (logged).
    """

    preset: str
    spec: SurrogateConfig
    acquisition: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""


#: ``build(columns, model, device) -> (spec, acquisition settings, reason)``.
PresetBuilder = Callable[
    [TableColumns, str, "str | None"], "tuple[SurrogateConfig, dict[str, Any], str]"
]


@dataclass(frozen=True)
class Preset:
    """A named surrogate configuration, built from what a table offers.

    Attributes:
        name: Registry name (``"lora"``, ``"components-or-lora"``...).
        build: Makes the spec, acquisition settings and a reason from the table's columns.
        overrides: Dotted spec overrides applied on top of ``build``'s spec (variants).
        description: One line for help texts and reports.
        uses_model: Whether the transformer matters (``model`` is passed to ``build``).
        needs: What the preset needs from a table and cannot run without (any of
            ``"categorical"``, ``"smiles"``, ``"reaction_smiles"``, ``"separator"``); empty:
            the texts alone.
        research: A research variant (segment pooling, hybrids, soft tokens, other LoRA
            placements): registered so that every benchmark row can be rerun by name, but
            not one of the presets the all-pool table compares (:func:`product_presets`).
    """

    name: str
    build: PresetBuilder
    overrides: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    uses_model: bool = False
    needs: tuple[str, ...] = ()
    research: bool = False

    def missing(self, columns: TableColumns) -> str | None:
        """Why this preset cannot run on a table with ``columns`` (``None`` if it can)."""
        have = {
            "categorical": bool(columns.categorical),
            "smiles": bool(columns.smiles),
            "reaction_smiles": columns.reaction_smiles is not None,
            "separator": columns.separator is not None,
        }
        lacking = [need for need in self.needs if not have[need]]
        if not lacking:
            return None
        what = {
            "categorical": "categorical columns (template columns whose values repeat)",
            "smiles": "SMILES columns",
            "reaction_smiles": "a reaction-SMILES column (values with '>>')",
            "separator": "a template whose fields are separated by one same text",
        }[lacking[0]]
        return (
            f"The {self.name} preset ({self.description}) needs {what}; this table has none "
            f"({columns.describe()})."
        )

    def resolve(
        self,
        columns: TableColumns,
        *,
        model: str = "minilm",
        device: str | None = None,
    ) -> PresetChoice:
        """The preset's surrogate config and acquisition settings on a table.

        Raises:
            InputError: The table lacks what the preset needs (the message says what).
        """
        problem = self.missing(columns)
        if problem:
            raise InputError(problem)
        spec, acquisition, reason = self.build(columns, model, device)
        return PresetChoice(self.name, spec.updated(self.overrides), dict(acquisition), reason)


#: Presets by name.
PRESETS: Registry[Preset] = Registry("preset")


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` to :data:`PRESETS` (a name may be registered once)."""
    PRESETS.register(preset.name)(preset)
    return preset


def product_presets() -> list[str]:
    """The presets the all-pool benchmark table compares (research variants left out)."""
    return [name for name in PRESETS.names() if not PRESETS.get(name).research]


def resolve_surrogate(
    name: str,
    space: CandidateSpace | None = None,
    *,
    columns: TableColumns | None = None,
    model: str = "minilm",
    device: str | None = None,
) -> PresetChoice:
    """The config ``name`` stands for: a preset resolved on the space's columns (detected
    unless given), or a bare registered surrogate at its defaults."""
    from llmbo.surrogates.config import SURROGATE_CONFIGS, surrogate_config

    key = name.lower()
    if key in PRESETS:
        if columns is None:
            if space is None:
                raise InputError(f"The {key} preset needs the candidate space to resolve.")
            columns = TableColumns.detect(space)
        choice = PRESETS.get(key).resolve(columns, model=model, device=device)
        if choice.reason:
            logger.info("Preset %s: %s", key, choice.reason)
        return choice
    if key not in SURROGATE_CONFIGS:
        raise InputError(
            f"Unknown surrogate or preset {name!r}; presets: {PRESETS.names()}, "
            f"surrogates: {SURROGATE_CONFIGS.names()}."
        )
    return PresetChoice(key, surrogate_config(key))


# ------------------------------------------------------------------------- builders
def _spec(name: str, **kwargs: Any) -> SurrogateConfig:
    from llmbo.surrogates.config import surrogate_config

    return surrogate_config(name, **kwargs)


def _encoder(model: str, device: str | None, **kwargs: Any) -> Any:
    from llmbo.encoders.transformer import EncoderConfig

    return EncoderConfig(model=model, device=device, **kwargs)


def _random(columns: TableColumns, model: str, device: str | None) -> Any:
    return _spec("random"), {}, ""


def _fixed(name: str, kernel: str, reads: str) -> PresetBuilder:
    def build(columns: TableColumns, model: str, device: str | None) -> Any:
        if reads == "reaction_smiles":
            featurizer: dict[str, Any] = {"column": columns.reaction_smiles}
        elif getattr(columns, reads):
            featurizer = {"columns": list(getattr(columns, reads))}
        else:  # no categorical columns found: the featurizer's own choice (text columns)
            featurizer = {}
        return _spec(name, featurizer=featurizer, kernel=kernel), {}, ""

    return build


def _llm(surrogate: str) -> PresetBuilder:
    def build(columns: TableColumns, model: str, device: str | None) -> Any:
        return _spec(surrogate, encoder=_encoder(model, device)), {}, ""

    return build


def _llm_segments(surrogate: str, side: str | None = None) -> PresetBuilder:
    """One mean-pooled vector per template field; ``side`` adds a fixed-feature kernel
    (``"drfp"``, ``"onehot"`` or ``"components"``) to the deep kernel."""

    def build(columns: TableColumns, model: str, device: str | None) -> Any:
        encoder = _encoder(model, device, pooling="segments", segment_separator=columns.separator)
        extra: dict[str, Any] = {}
        if side is not None:
            featurizer = (
                {"column": columns.reaction_smiles}
                if side == "drfp"
                else {"columns": list(columns.categorical)}
            )
            extra = {"side_features": side, "side_featurizer": featurizer}
        return _spec(surrogate, encoder=encoder, **extra), {}, ""

    return build


def _components_or_lora(columns: TableColumns, model: str, device: str | None) -> Any:
    if columns.all_categorical:
        spec = _spec(
            "components", featurizer={"columns": list(columns.categorical)}, kernel="components"
        )
        reason = (
            f"every template column is categorical ({list(columns.categorical)}): a GP on the "
            "components (Tanimoto on one-hot + one categorical kernel per column), outcome "
            "power 2"
        )
        return spec, {"acquisition.outcome_power": 2.0}, reason
    free = [f for f in columns.fields if f not in (*columns.categorical, *columns.constant)]
    why = (
        f"column(s) {free} are not categorical"
        if free
        else "the template names no columns (a callable template)"
    )
    spec = _spec("lora", encoder=_encoder(model, device), top_module="auto")
    return spec, {}, f"{why}: the LoRA deep kernel on the texts"


for _preset in (
    Preset("random", _random, description="random search"),
    Preset(
        "onehot",
        _fixed("onehot", "matern-ard", "categorical"),
        description="GP (Matérn-5/2, ARD) on one-hot categorical columns (else every text column)",
    ),
    Preset(
        "components",
        _fixed("components", "components", "categorical"),
        description="GP on the categorical columns (else every text column): Tanimoto on "
        "one-hot + one categorical kernel per column",
    ),
    Preset(
        "drfp",
        _fixed("drfp", "tanimoto", "reaction_smiles"),
        description="GP (Tanimoto) on DRFP of the reaction SMILES",
        needs=("reaction_smiles",),
    ),
    Preset(
        "morgan",
        _fixed("morgan", "tanimoto", "smiles"),
        description="GP (Tanimoto) on Morgan bits of each SMILES column",
        needs=("smiles",),
    ),
    Preset(
        "static",
        _llm("static"),
        description="GP (Matérn-5/2) on frozen mean-pooled embeddings",
        uses_model=True,
    ),
    Preset(
        "projection",
        _llm("projection"),
        description="deep kernel: frozen transformer + trained projection",
        uses_model=True,
    ),
    Preset(
        "lora",
        _llm("lora"),
        overrides={"top_module": "auto"},
        description="deep kernel: LoRA (last feed-forward output block of BERT-family models, "
        "else the top layers) + projection",
        uses_model=True,
    ),
    Preset(
        DEFAULT_PRESET,
        _components_or_lora,
        description="the default: the components GP (outcome power 2) when every template "
        "column is categorical, else the LoRA deep kernel",
        uses_model=True,
    ),
):
    register_preset(_preset)

for _base, _label in (("static", "frozen"), ("projection", "projection"), ("lora", "LoRA")):
    register_preset(
        Preset(
            f"{_base}-seg",
            _llm_segments(_base),
            overrides={"top_module": "auto"} if _base == "lora" else {},
            description=f"{_label} deep kernel with one pooled vector per template field",
            uses_model=True,
            needs=("separator",),
            research=True,
        )
    )


def register_variant_preset(
    name: str, base: str, overrides: Mapping[str, Any], description: str = ""
) -> Preset:
    """Register preset ``name``: preset ``base`` with fixed spec ``overrides``."""
    parent = PRESETS.get(base)
    return register_preset(
        Preset(
            name,
            parent.build,
            overrides={**parent.overrides, **overrides},
            description=description or f"{base} with {dict(overrides)}",
            uses_model=parent.uses_model,
            needs=parent.needs,
            research=True,
        )
    )


for _side, _what in (
    ("drfp", "Tanimoto kernel on DRFP"),
    ("onehot", "Tanimoto kernel on one-hot categorical columns (counts shared components)"),
    ("components", "the components kernel"),
):
    register_preset(
        Preset(
            "hybrid-seg" if _side == "drfp" else f"hybrid-{_side}-seg",
            _llm_segments("projection", side=_side),
            description=f"projection-seg deep kernel + {_what} (sum of kernels)",
            uses_model=True,
            research=True,
            needs=("separator", "reaction_smiles" if _side == "drfp" else "categorical"),
        )
    )

for _name, _base, _overrides, _description in (
    (
        "lora-layer",
        "lora",
        {"top_module": None},
        "LoRA on every linear layer of the top block (GOLLuM's placement) + projection",
    ),
    (
        "lora-soft",
        "lora",
        {"soft_tokens": 4, "top_module": None},
        "LoRA deep kernel + 4 learnable soft tokens",
    ),
    (
        "projection-soft",
        "projection",
        {"soft_tokens": 4},
        "projection deep kernel + 4 learnable soft tokens",
    ),
    (
        "lora-out",
        "lora",
        {"top_module": "output"},
        "lora with LoRA only on the last layer's feed-forward output (cached fast path)",
    ),
    (
        "lora-out-seg",
        "lora-seg",
        {"top_module": "output"},
        "lora-seg with LoRA only on the last layer's feed-forward output (cached fast path)",
    ),
):
    register_variant_preset(_name, _base, _overrides, _description)
