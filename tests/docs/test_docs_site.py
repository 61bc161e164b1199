"""The documentation builds with warnings as errors, and its API reference names every
public name (the ``__all__`` of every public module)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _public_names() -> set[tuple[str, str]]:
    import llmbo

    out = set()
    for info in pkgutil.walk_packages(llmbo.__path__, "llmbo."):
        parts = info.name.split(".")
        if "cli" in parts or any(p.startswith("_") for p in parts[1:]):
            continue
        module = importlib.import_module(info.name)
        out |= {(info.name, name) for name in getattr(module, "__all__", ())}
    return out


def _same(module: str, name: str, obj: object) -> bool:
    try:
        return getattr(importlib.import_module(module), name, None) is obj
    except ImportError:
        return False


def _inventory(site: Path) -> set[str]:
    raw = (site / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return out


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    documented = _inventory(site)
    missing = []
    for module, name in sorted(_public_names()):
        obj = getattr(importlib.import_module(module), name, None)
        home = getattr(obj, "__module__", module) if callable(obj) else module
        if any(f"{m}.{name}" in documented for m in (module, home)):
            continue
        # A re-export (e.g. llmbo.benchmarks.datasets of llmbo.datasets) counts where the
        # same object is documented under its own module.
        elsewhere = [e.rsplit(".", 1)[0] for e in documented if e.endswith(f".{name}")]
        if not any(_same(m, name, obj) for m in elsewhere):
            missing.append(f"{module}.{name}")
    assert not missing, f"not in the API reference: {missing}"


def test_pages_link_only_inside_the_site_or_to_known_hosts(site: Path) -> None:
    """Internal links and anchors are checked by the strict build; external links cannot
    be followed offline, so the pages may only point at a short list of stable hosts."""
    import re

    allowed = ("https://semver.org", "https://squidfunk.github.io", "https://www.mkdocs.org")
    bad = set()
    for page in site.rglob("*.html"):
        for url in re.findall(r'href="(https?://[^"]+)"', page.read_text(encoding="utf-8")):
            if not url.startswith(allowed):
                bad.add(url)
    assert not bad, sorted(bad)


def test_the_benchmark_tables_are_included_at_build_time(site: Path) -> None:
    text = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    table = (ROOT / "benchmarks" / "results" / "presets.md").read_text(encoding="utf-8")
    first_row = next(line for line in table.splitlines() if line.startswith("| components"))
    assert first_row.split("|")[2].strip() in text
