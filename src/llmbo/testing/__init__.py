"""Reusable test suites for code that plugs into llmbo (like ``optuna.testing``).

Each module holds pytest base classes that state a contract of one llmbo interface as tests.
A new implementation gets the whole suite by subclassing the base class in its own test
module and saying how to build the object under test:

* :mod:`llmbo.testing.storage` — :class:`~llmbo.testing.storage.StorageContract`, every
  rule of :class:`llmbo.storage.BaseStorage` (studies, reservations, one live trial per
  candidate, all-or-nothing batches, leases, released suggestions, read-only opening).
  A backend's test module writes::

      from llmbo.testing.storage import StorageContract

      class TestMyBackend(StorageContract):
          def make_storage(self, tmp_path):
              return MyStorage(tmp_path / "study")

  and ``pytest`` runs every contract test against ``MyStorage``. llmbo's own SQLite and
  PostgreSQL backends are tested this way (``tests/test_storage.py``).
* :mod:`llmbo.testing.surrogates` — :class:`~llmbo.testing.surrogates.SurrogateContract`,
  the rules of :class:`llmbo.surrogates.base.Surrogate`, run for every surrogate in the
  registry (``SURROGATES``) on a small pool with a tiny random BERT: training improves its
  objective, posterior shapes and dtypes, float32 and float64 inputs, config round-trip,
  same seed → same result, acquisition and fallback. A project that registers a surrogate
  writes::

      from llmbo.testing.surrogates import SurrogateContract

      class TestMySurrogate(SurrogateContract):
          def build_config(self, case, model):
              if case == "mine":
                  return MyConfig(...)
              return super().build_config(case, model)

  and a registered surrogate without a config there fails the suite instead of skipping it.
  llmbo's own surrogates are tested this way (``tests/surrogates/test_contract.py``).

These modules import ``pytest`` (and ``hypothesis`` where a suite uses it), which are
development dependencies (``pip install llmbo[dev]``), not runtime ones: ``import llmbo``
never imports this package, and this package imports no suite until one is asked for.
"""

from __future__ import annotations

import sys

__all__: list[str] = []

# Readable assertion failures in the suites, as in a test module: only if pytest is already
# running (importing it here would make pytest a runtime dependency of this package).
if "pytest" in sys.modules:
    sys.modules["pytest"].register_assert_rewrite(
        "llmbo.testing.storage", "llmbo.testing.surrogates"
    )
