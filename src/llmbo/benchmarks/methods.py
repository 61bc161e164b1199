"""Benchmark methods: named recipes that turn a benchmark pool into a surrogate spec.

A method is registered once in :data:`METHODS` and called as
``method(pool, model, device, template, options) -> SurrogateConfig``. The base methods are
the baselines of issue 3 and the three LLM surrogates; a *variant* is a base method plus
fixed spec overrides, added in one line::

    register_variant("lora-cls", "lora", {"encoder.pooling": "cls"}, "LoRA, CLS pooling")

Overrides (and the run-time ``options``) are dotted paths into the surrogate's config
(:meth:`~llmbo.surrogates.config.SurrogateConfig.updated`):
``"deep_kernel.steps"``, ``"encoder.pooling"``, ``"lora.r"`` (a ``peft.LoraConfig`` argument), ``"top_layers"``,
``"soft_tokens"``, ``"kernel"``, ``"featurizer.n_bits"``...

A *peer* method runs another tool through the same protocol: instead of a surrogate spec
it has a ``proposer`` builder, ``proposer(pool) -> Proposer`` (``tpe``: Optuna's TPE on the
reaction components; ``baybe``: BayBE with ECFP encodings of the SMILES columns). A method
that needs an optional package names it in ``requires`` and is skipped, with the install
command, where the package is missing.

Each method says which kinds of pool it applies to (:attr:`BenchmarkMethod.pool_kinds`):
random search, the Morgan GP (fingerprints of the pool's SMILES columns: one per reaction
component, or the molecule's) and the LLM surrogates run on every pool; the methods built on
reaction components (one-hot and component kernels, DRFP of the reaction SMILES, one pooled
vector per component) run on reaction pools only, and are skipped on molecule pools.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmbo.errors import InputError
from llmbo.registry import Registry

if TYPE_CHECKING:
    from llmbo.acquisition import AcquisitionConfig
    from llmbo.datasets import CandidatePool, PoolKind
    from llmbo.presets import PresetChoice
    from llmbo.proposers.base import Proposer
    from llmbo.surrogates.config import SurrogateConfig

__all__ = [
    "ANY_POOL",
    "DEFAULT_METHODS",
    "METHODS",
    "REACTION_POOLS",
    "BenchmarkMethod",
    "method_label",
    "register_variant",
]

#: ``build(pool, model, device, template) -> SurrogateConfig`` (before overrides).
SpecBuilder = Callable[["CandidatePool", str, "str | None", str], "SurrogateConfig"]
#: ``proposer(pool) -> Proposer``: a peer method's proposer (shared across seeds of a pool).
ProposerBuilder = Callable[["CandidatePool"], "Proposer"]

#: Every kind of pool (see :data:`llmbo.datasets.PoolKind`).
ANY_POOL: frozenset[PoolKind] = frozenset({"reaction", "molecule"})
#: Reaction pools only: methods that read the reaction's components or reaction SMILES.
REACTION_POOLS: frozenset[PoolKind] = frozenset({"reaction"})


@dataclass(frozen=True)
class BenchmarkMethod:
    """A named way of building the surrogate (or the proposer) for one benchmark pool.

    Attributes:
        name: Registry name (``"drfp"``, ``"lora-soft"``...).
        build: Makes the base spec from the pool, model, device and template (``None`` for
            a method with a ``proposer``).
        overrides: Dotted-path spec overrides applied on top of ``build``'s spec.
        uses_model: Whether the transformer ``model`` matters (LLM methods); results of
            other methods are recorded with an empty model.
        default: Part of ``--methods all``.
        description: One line for ``llmbo bench --help`` and reports.
        acquisition: The acquisition function the optimizer uses (``"logei"``, ``"ucb"``
            or ``"ts"``); an ``"acquisition"`` entry in the run's options overrides it, and
            ``"acquisition.<field>"`` entries set other :class:`AcquisitionConfig` fields
            (``acquisition.beta=0.5``).
        pool_kinds: The kinds of pool the method applies to (:data:`ANY_POOL` or
            :data:`REACTION_POOLS`); on others it is skipped (:meth:`skip_reason`).
        proposer: Builds the method's proposer for a pool, used instead of the Bayesian
            proposer over a surrogate spec (peer methods: ``tpe``, ``baybe``); such a
            method has no ``build`` and takes no spec or acquisition options.
        requires: Optional packages the method imports; where one is missing the method
            is skipped with the command that installs it.
        preset: The registered preset (:data:`llmbo.presets.PRESETS`) the method runs, so
            ``Optimizer(space, preset)`` and ``--surrogate preset`` run what the table
            measured; ``None`` for peers.
    """

    name: str
    build: SpecBuilder | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    uses_model: bool = False
    default: bool = True
    description: str = ""
    acquisition: str = "logei"
    pool_kinds: frozenset[PoolKind] = ANY_POOL
    proposer: ProposerBuilder | None = None
    requires: tuple[str, ...] = ()
    preset: str | None = None

    def __post_init__(self) -> None:
        if (self.build is None) == (self.proposer is None):
            raise ValueError(f"Method {self.name!r} needs exactly one of build and proposer.")

    def __call__(
        self,
        pool: CandidatePool,
        model: str = "minilm",
        device: str | None = None,
        template: str = "procedure",
        options: Mapping[str, Any] | None = None,
    ) -> SurrogateConfig:
        """The surrogate spec of this method on ``pool`` (``options`` override last)."""
        if self.build is None:
            raise InputError(
                f"{self.name} ({self.description}) runs its own proposer; it has no surrogate spec."
            )
        spec = self.build(pool, model, device, template)
        return spec.updated(self.overrides).updated(spec_options(options))

    def skip_reason(self, pool: CandidatePool) -> str | None:
        """Why the method does not apply to ``pool`` (one sentence), or ``None`` if it does."""
        from llmbo import _imports

        missing = [m for m in self.requires if not _imports.is_available(m)]
        if missing:
            return (
                f"{self.name} ({self.description}) needs the optional package(s) "
                f"{', '.join(missing)}: {_imports.install_hint(missing[0])}."
            )
        if pool.kind in self.pool_kinds:
            return None
        kinds = " or ".join(sorted(self.pool_kinds))
        return (
            f"{self.name} ({self.description}) applies to {kinds} pools; "
            f"{pool.name!r} is a {pool.kind} pool."
        )

    def acquisition_for(
        self,
        options: Mapping[str, Any] | None = None,
        pool: CandidatePool | None = None,
        template: str | None = None,
    ) -> AcquisitionConfig:
        """The acquisition of a run with ``options`` on ``pool``: the preset's acquisition
        settings there (e.g. outcome power 2), with ``options``' acquisition entries over
        them."""
        from llmbo.acquisition import AcquisitionConfig, acquisition_from_settings

        settings: dict[str, Any] = {}
        if self.preset is not None and pool is not None and self.skip_reason(pool) is None:
            choice = _preset_choice(self.preset, pool, "minilm", None, template)
            settings.update(choice.acquisition)
        settings.update(options or {})
        return acquisition_from_settings(AcquisitionConfig(name=self.acquisition), settings)  # type: ignore[arg-type]


def spec_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The surrogate settings among a run's options (everything but the acquisition)."""
    from llmbo.acquisition import is_acquisition_setting

    return {k: v for k, v in (options or {}).items() if not is_acquisition_setting(k)}


#: Benchmark methods by name.
METHODS: Registry[BenchmarkMethod] = Registry("benchmark method")


def _register(method: BenchmarkMethod) -> BenchmarkMethod:
    METHODS.register(method.name)(method)
    return method


def default_methods() -> list[str]:
    """Names selected by ``--methods all``, in registration order."""
    return [name for name in _ORDER if METHODS.get(name).default]


_ORDER: list[str] = []


def _add(method: BenchmarkMethod) -> None:
    _register(method)
    _ORDER.append(method.name)


def method_label(name: str, options: Mapping[str, Any] | None = None) -> str:
    """How a run is named in the results: ``"lora"`` or ``"lora{deep_kernel.steps=50}"``."""
    if not options:
        return name.lower()
    parts = ",".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(options.items())
    )
    return f"{name.lower()}{{{parts}}}"


# ------------------------------------------------------------------- presets
def _preset_build(name: str) -> SpecBuilder:
    """The spec of preset ``name`` on a pool (its declared columns, the run's template)."""

    def build(
        pool: CandidatePool, model: str, device: str | None, template: str
    ) -> SurrogateConfig:
        return _preset_choice(name, pool, model, device, template).spec

    return build


def _preset_choice(
    name: str, pool: CandidatePool, model: str, device: str | None, template: str | None
) -> PresetChoice:
    from llmbo.presets import PRESETS, TableColumns

    return PRESETS.get(name).resolve(
        TableColumns.from_pool(pool, template), model=model, device=device
    )


def fast_lora_module(model: str) -> str | None:
    """Where ``lora`` puts its adapters for ``model`` (``top_module="auto"``).

    BERT-family models get LoRA on the last layer's feed-forward ``output`` block, whose
    inputs are cached once, so a training step runs only that block. Other models, and
    models whose config cannot be read locally, get GOLLuM's placement: LoRA on every
    linear layer of the top block.
    """
    from llmbo.encoders.transformer import auto_top_module, model_type

    return auto_top_module(model_type(model), soft_tokens=0, top_layers=None)


def _from_preset(
    name: str, *, default: bool = True, pool_kinds: frozenset[PoolKind] | None = None
) -> None:
    """Register the benchmark method of the registered preset ``name`` (same name)."""
    from llmbo.presets import PRESETS

    preset = PRESETS.get(name)
    if pool_kinds is None:
        pool_kinds = REACTION_POOLS if preset.needs else ANY_POOL
    _add(
        BenchmarkMethod(
            name,
            _preset_build(name),
            uses_model=preset.uses_model,
            default=default,
            description=preset.description,
            pool_kinds=pool_kinds,
            preset=name,
        )
    )


_from_preset("random")
# One-hot codes of a column unique per row (a molecule's SMILES) only encode identity.
for _name in ("onehot", "components"):
    _from_preset(_name, pool_kinds=REACTION_POOLS)
_from_preset("drfp")
# Morgan bits read any SMILES column: a reaction's components or the molecule.
_from_preset("morgan", pool_kinds=ANY_POOL)
for _name in ("static", "projection", "lora"):
    _from_preset(_name)


def register_variant(
    name: str,
    base: str,
    overrides: Mapping[str, Any],
    description: str = "",
    *,
    default: bool = False,
) -> BenchmarkMethod:
    """Register ``name`` as preset and method ``base`` with fixed spec ``overrides``.

    The variant is a preset too (``--surrogate NAME``). Variants are not part of
    ``--methods all`` unless ``default=True``.
    """
    from llmbo.presets import PRESETS, register_variant_preset

    parent = METHODS.get(base)
    if parent.preset is None:
        raise InputError(f"Method {base!r} runs its own proposer; it has no spec to override.")
    if name not in PRESETS:
        register_variant_preset(name, parent.preset, overrides, description)
    method = BenchmarkMethod(
        name=name,
        build=_preset_build(name),
        uses_model=parent.uses_model,
        default=default,
        description=description or f"{base} with {dict(overrides)}",
        acquisition=parent.acquisition,
        pool_kinds=parent.pool_kinds,
        preset=name,
    )
    if default:
        _add(method)
    else:
        _register(method)
    return method


for _name in ("lora-layer", "lora-soft", "projection-soft"):
    _from_preset(_name, default=False)
# The soft-token variants are not part of ``--methods all``: soft tokens must pass through a
# whole top layer (10-30 s per iteration on 2 CPU cores); the one run tried gave no gain
# (research/LOG.md).

# Segment pooling (one mean-pooled vector per reaction component) and the hybrids that add
# a fixed-feature kernel of the components: reaction pools only.
for _name in ("static-seg", "projection-seg", "lora-seg", "hybrid-seg", "hybrid-components-seg"):
    _from_preset(_name, default=False)
_from_preset("hybrid-onehot-seg")  # the best LLM method on bh1-bh5 (research/LOG.md)

# LoRA on the last feed-forward output only
for _name in ("lora-out", "lora-out-seg"):
    _from_preset(_name, default=False)

# The library default (benchmarks/README.md, "Choosing the default configuration").
_from_preset("components-or-lora", pool_kinds=ANY_POOL)


# ------------------------------------------------------------------ peer tools
def _tpe(pool: CandidatePool) -> Proposer:
    from llmbo.proposers.tpe import TPEProposer

    return TPEProposer(list(pool.smiles_columns))


def _baybe(pool: CandidatePool) -> Proposer:
    from llmbo.proposers.baybe import BayBEProposer

    return BayBEProposer(pool.smiles_columns)


_add(
    BenchmarkMethod(
        "tpe",
        proposer=_tpe,
        default=False,
        description="Optuna TPE, each reaction component a categorical choice (peer)",
        pool_kinds=REACTION_POOLS,
        requires=("optuna",),
    )
)
_add(
    BenchmarkMethod(
        "baybe",
        proposer=_baybe,
        default=False,
        description="BayBE with its default recommender, ECFP of each SMILES column (peer)",
        requires=("baybe",),
    )
)

#: ``--methods all``.
DEFAULT_METHODS: tuple[str, ...] = tuple(default_methods())
