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

from llmbo.datasets import TEMPLATE_SEPARATORS, pool_featurizer_options
from llmbo.errors import InputError
from llmbo.registry import Registry

if TYPE_CHECKING:
    from llmbo.acquisition import AcquisitionConfig
    from llmbo.datasets import CandidatePool, PoolKind
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

    def acquisition_for(self, options: Mapping[str, Any] | None = None) -> AcquisitionConfig:
        """The acquisition of a run with ``options`` (their acquisition entries win)."""
        from llmbo.acquisition import AcquisitionConfig, acquisition_from_settings

        return acquisition_from_settings(AcquisitionConfig(name=self.acquisition), options)  # type: ignore[arg-type]


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


# -------------------------------------------------------------------- builders
def _spec(name: str, **kwargs: Any) -> SurrogateConfig:
    from llmbo.surrogates.config import surrogate_config

    return surrogate_config(name, **kwargs)


def _random(pool: CandidatePool, model: str, device: str | None, template: str) -> SurrogateConfig:
    return _spec(name="random")


def _onehot(pool: CandidatePool, model: str, device: str | None, template: str) -> SurrogateConfig:
    featurizer = pool_featurizer_options(pool, "onehot")
    return _spec(name="onehot", featurizer=featurizer, kernel="matern-ard")


def _components_gp(
    pool: CandidatePool, model: str, device: str | None, template: str
) -> SurrogateConfig:
    featurizer = pool_featurizer_options(pool, "components")
    return _spec(name="components", featurizer=featurizer, kernel="components")


def _drfp(pool: CandidatePool, model: str, device: str | None, template: str) -> SurrogateConfig:
    featurizer = pool_featurizer_options(pool, "drfp")
    return _spec(name="drfp", featurizer=featurizer, kernel="tanimoto")


def _morgan(pool: CandidatePool, model: str, device: str | None, template: str) -> SurrogateConfig:
    featurizer = pool_featurizer_options(pool, "morgan")
    return _spec(name="morgan", featurizer=featurizer, kernel="tanimoto")


def fast_lora_module(model: str) -> str | None:
    """Where benchmark ``lora`` puts its adapters for ``model`` (``top_module="auto"``).

    BERT-family models get LoRA on the last layer's feed-forward ``output`` block, whose
    inputs are cached once, so a training step runs only that block. Other models, and
    models whose config cannot be read locally, get GOLLuM's placement: LoRA on every
    linear layer of the top block.
    """
    from llmbo.encoders.transformer import auto_top_module, model_type

    return auto_top_module(model_type(model), soft_tokens=0, top_layers=None)


#: Benchmark ``lora``: the cached output-block LoRA where the model allows it.
_LORA_PLACEMENT = {"top_module": "auto"}


def _llm(surrogate: str) -> SpecBuilder:
    def build(
        pool: CandidatePool, model: str, device: str | None, template: str
    ) -> SurrogateConfig:
        from llmbo.encoders.transformer import EncoderConfig

        return _spec(name=surrogate, encoder=EncoderConfig(model=model, device=device))

    return build


_add(BenchmarkMethod("random", _random, description="random search"))
_add(
    BenchmarkMethod(
        "onehot",
        _onehot,
        description="GP (Matérn-5/2, ARD) on one-hot components",
        pool_kinds=REACTION_POOLS,
    )
)
_add(
    BenchmarkMethod(
        "components",
        _components_gp,
        description="GP on the components: Tanimoto on one-hot + additive categorical kernel",
        pool_kinds=REACTION_POOLS,
    )
)
_add(
    BenchmarkMethod(
        "drfp",
        _drfp,
        description="GP (Tanimoto) on DRFP of the reaction SMILES",
        pool_kinds=REACTION_POOLS,
    )
)
_add(
    BenchmarkMethod(
        "morgan",
        _morgan,
        description="GP (Tanimoto) on Morgan bits of each SMILES column (per reaction "
        "component, or the molecule)",
    )
)
_add(
    BenchmarkMethod(
        "static",
        _llm("static"),
        uses_model=True,
        description="GP (Matérn-5/2) on frozen mean-pooled embeddings",
    )
)
_add(
    BenchmarkMethod(
        "projection",
        _llm("projection"),
        uses_model=True,
        description="deep kernel: frozen transformer + trained projection",
    )
)
_add(
    BenchmarkMethod(
        "lora",
        _llm("lora"),
        overrides=_LORA_PLACEMENT,
        uses_model=True,
        description="deep kernel: LoRA (last feed-forward output block of BERT-family models, "
        "else the top layers) + projection",
    )
)


def register_variant(
    name: str,
    base: str,
    overrides: Mapping[str, Any],
    description: str = "",
    *,
    default: bool = False,
) -> BenchmarkMethod:
    """Register ``name`` as method ``base`` with fixed spec ``overrides``.

    Variants are not part of ``--methods all`` unless ``default=True``.
    """
    parent = METHODS.get(base)
    if parent.build is None:
        raise InputError(f"Method {base!r} runs its own proposer; it has no spec to override.")
    method = BenchmarkMethod(
        name=name,
        build=parent.build,
        overrides={**parent.overrides, **overrides},
        uses_model=parent.uses_model,
        default=default,
        description=description or f"{base} with {dict(overrides)}",
        acquisition=parent.acquisition,
        pool_kinds=parent.pool_kinds,
    )
    if default:
        _add(method)
    else:
        _register(method)
    return method


register_variant(
    "lora-layer",
    "lora",
    {"top_module": None},
    "LoRA on every linear layer of the top block (GOLLuM's placement) + projection",
)
register_variant(
    "lora-soft",
    "lora",
    {"soft_tokens": 4, "top_module": None},
    "LoRA deep kernel + 4 learnable soft tokens",
)
register_variant(
    "projection-soft",
    "projection",
    {"soft_tokens": 4},
    "projection deep kernel + 4 learnable soft tokens",
)
# The soft-token variants are not part of ``--methods all``: soft tokens must pass through a
# whole top layer (10-30 s per iteration on 2 CPU cores); the one run tried gave no gain
# (research/LOG.md).


# ------------------------------------------------------------ segment pooling
def _llm_segments(surrogate: str, side: str | None = None) -> SpecBuilder:
    """LLM method with one mean-pooled vector per reaction component (segment pooling).

    ``side`` adds a Tanimoto kernel on fixed features of each reaction to the deep kernel:
    ``"drfp"`` (DRFP of the reaction SMILES), ``"onehot"`` (one-hot components, where the
    Tanimoto similarity counts the components two reactions share) or ``"components"`` (that
    Tanimoto kernel plus one categorical kernel per component).
    """

    def build(
        pool: CandidatePool, model: str, device: str | None, template: str
    ) -> SurrogateConfig:
        from llmbo.encoders.transformer import EncoderConfig

        separator = TEMPLATE_SEPARATORS.get(template)
        if separator is None:
            raise InputError(
                f"No component separator is known for template {template!r}; "
                f"segment pooling supports {sorted(TEMPLATE_SEPARATORS)}."
            )
        encoder = EncoderConfig(
            model=model, device=device, pooling="segments", segment_separator=separator
        )
        extra: dict[str, Any] = {}
        if side is not None:
            extra = {"side_features": side, "side_featurizer": pool_featurizer_options(pool, side)}
        return _spec(name=surrogate, encoder=encoder, **extra)

    return build


for _base, _label in (("static", "frozen"), ("projection", "projection"), ("lora", "LoRA")):
    _add(
        BenchmarkMethod(
            f"{_base}-seg",
            _llm_segments(_base),
            overrides=_LORA_PLACEMENT if _base == "lora" else {},
            uses_model=True,
            default=False,
            description=f"{_label} deep kernel with one pooled vector per reaction component",
            pool_kinds=REACTION_POOLS,
        )
    )
_add(
    BenchmarkMethod(
        "hybrid-seg",
        _llm_segments("projection", side="drfp"),
        uses_model=True,
        default=False,
        description="projection-seg deep kernel + Tanimoto kernel on DRFP (sum of kernels)",
        pool_kinds=REACTION_POOLS,
    )
)
_add(
    BenchmarkMethod(
        "hybrid-onehot-seg",
        _llm_segments("projection", side="onehot"),
        uses_model=True,
        default=True,  # the best LLM method on bh1-bh5 (research/LOG.md)
        description="projection-seg deep kernel + Tanimoto kernel on one-hot components "
        "(sum of kernels; the second counts shared components)",
        pool_kinds=REACTION_POOLS,
    )
)
_add(
    BenchmarkMethod(
        "hybrid-components-seg",
        _llm_segments("projection", side="components"),
        uses_model=True,
        default=False,
        description="projection-seg deep kernel + the components kernel (Tanimoto on one-hot "
        "+ one categorical kernel per component)",
        pool_kinds=REACTION_POOLS,
    )
)

# ------------------------------------------- LoRA on the last feed-forward output only
for _base in ("lora", "lora-seg"):
    register_variant(
        _base.replace("lora", "lora-out"),
        _base,
        {"top_module": "output"},
        f"{_base} with LoRA only on the last layer's feed-forward output (cached fast path)",
    )


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
