"""The gate every image passes (sep/ota/gate.py): verification + policy, from a trust directory.

Independent truth: the OTA service's hook contract (``(ok, "REASON: message")`` with the
machine-readable reason first, once), the Reason names of sep/firmware/errors.py, the keys and
file versions the test chose itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sep.firmware.builder import build_image
from sep.firmware.keys import write_key_dir
from sep.firmware.policy import APPLICATION_IMAGE_TYPE, DeviceIdentity
from sep.firmware.testing import TestKeys, make_keys
from sep.ota.client import ImageIdent
from sep.ota.gate import make_gate

MFR = 0x1234
DEVICE = DeviceIdentity(MFR, APPLICATION_IMAGE_TYPE, 0x00010001)


@pytest.fixture(scope="module")
def keys() -> TestKeys:
    return make_keys(1)


def image(keys: TestKeys, version: int = 0x00010002) -> bytes:
    return build_image(b"new firmware" * 8, manufacturer_code=MFR,
                       image_type=APPLICATION_IMAGE_TYPE, file_version=version,
                       signer=keys.signer)


def test_gate_verifies_stored_files_and_prechecks_offers(keys: TestKeys, tmp_path: Path) -> None:
    write_key_dir(tmp_path / "trust", keys.ca, keys.signer)
    verify, precheck = make_gate(tmp_path / "trust", DEVICE)
    good = tmp_path / "good.ota"
    good.write_bytes(image(keys))
    assert verify(good) == (True, None)

    def reason(ok_why: tuple[bool, str | None]) -> str:
        ok, why = ok_why
        assert ok is False and why is not None
        return why

    stranger = tmp_path / "stranger.ota"
    stranger.write_bytes(image(make_keys(1)))
    why = reason(verify(stranger))
    assert why.startswith("SIGNER_NOT_ALLOWED: ") and why.count("SIGNER_NOT_ALLOWED") == 1
    old = tmp_path / "old.ota"
    old.write_bytes(image(keys, version=0x00010001))
    why = reason(verify(old))
    assert why.startswith("DOWNGRADE: ") and why.count("DOWNGRADE") == 1
    why = reason(verify(tmp_path / "missing.ota"))
    assert "missing.ota" in why

    assert precheck(ImageIdent(MFR, APPLICATION_IMAGE_TYPE, 0x00010002, 1000)) is None
    for ident, name in ((ImageIdent(MFR, APPLICATION_IMAGE_TYPE, 0x00010001, 1000), "DOWNGRADE"),
                        (ImageIdent(MFR + 1, APPLICATION_IMAGE_TYPE, 0x00010002, 1000),
                         "WRONG_MANUFACTURER")):
        why = precheck(ident)
        assert why is not None and why.startswith(f"{name}: ") and why.count(name) == 1


def test_no_or_broken_trust_refuses_every_image(keys: TestKeys, tmp_path: Path) -> None:
    good = tmp_path / "good.ota"
    good.write_bytes(image(keys))
    for trust_dir in (None, tmp_path / "nowhere", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        verify, _ = make_gate(trust_dir, DEVICE)
        ok, why = verify(good)
        assert ok is False and why and "every image is refused" in why, trust_dir
