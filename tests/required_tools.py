"""External tools a test needs (tshark, mosquitto, openssl, node...): never a silent skip in CI.

On a developer's machine a missing tool skips the test that needs it; with the environment
variable ``CI`` set (``.ci/run`` installs every tool), it fails the test, so a CI image that lost a
tool cannot pass by skipping the checks that tool makes.

Two spellings: :func:`require_tool` inside a test or helper (returns the tool's path), and the
marker :func:`needs_tool` on a test or module (``pytestmark``), checked before the test runs by
``conftest.py``.

(The module is not called ``tools``: zigpy installs a top-level package of that name.)
"""

from __future__ import annotations

import os
import shutil

import pytest

HINT = "bash .ci/run installs it"


def missing(what: str) -> None:
    """``what`` is not here: fail under CI, skip elsewhere (never returns)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI but missing ({HINT})", pytrace=False)
    pytest.skip(f"{what} is not installed ({HINT})")


def require_tool(name: str) -> str:
    """The path of the executable ``name`` on PATH; fails under CI, skips elsewhere without it."""
    path = shutil.which(name)
    if path is None:
        missing(name)
    assert path is not None
    return path


def needs_tool(*names: str) -> pytest.MarkDecorator:
    """Mark a test (or a module, as ``pytestmark``) as needing the executables ``names``."""
    return pytest.mark.needs_tool(*names)
