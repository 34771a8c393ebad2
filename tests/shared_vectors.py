"""The published test vectors (``shared/vectors`` beside the checkout).

Found by walking up from this file, so the tests also find them from a copy of the tree one
level deeper (mutmut runs them from ``mutants/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def vectors_file(name: str = "zigbee-crypto.json") -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "vectors" / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"shared/vectors/{name} above {here.parent}")


def load(name: str = "zigbee-crypto.json") -> dict[str, Any]:
    return json.loads(vectors_file(name).read_text())
