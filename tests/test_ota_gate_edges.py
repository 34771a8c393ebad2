"""The OTA gate (sep/ota/gate.py) at its edges: the manifest's own policy, every offer field,
what the operator is told and how loudly.

Independent truth: the policy rules listed in sep/firmware/policy.py (metrology firmware
never over the air, also when only the manifest says so; image type = the device's), the
Reason names of sep/firmware/errors.py, the hook contract (``(ok, "REASON: message")``),
and the module's promise that no trust refuses every image, said once as information when
it is the configured choice and as a warning when a configured directory is broken.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sep.firmware.builder import build_image
from sep.firmware.keys import write_key_dir
from sep.firmware.manifest import ImageKind
from sep.firmware.policy import APPLICATION_IMAGE_TYPE, METROLOGY_IMAGE_TYPE, DeviceIdentity
from sep.firmware.testing import TestKeys, make_keys
from sep.ota.client import ImageIdent
from sep.ota.gate import make_gate

MFR = 0x1234
DEVICE = DeviceIdentity(MFR, APPLICATION_IMAGE_TYPE, 0x00010001)
NEWER = 0x00010002


@pytest.fixture(scope="module")
def keys() -> TestKeys:
    return make_keys(1)


def test_the_manifest_is_checked_too(keys: TestKeys, tmp_path: Path) -> None:
    """An application image type whose manifest says metrology is refused (policy rule 1)."""
    write_key_dir(tmp_path / "trust", keys.ca, keys.signer)
    verify, _ = make_gate(tmp_path / "trust", DEVICE)
    f = tmp_path / "metrology.ota"
    f.write_bytes(build_image(b"metrology code" * 8, manufacturer_code=MFR,
                              image_type=APPLICATION_IMAGE_TYPE, file_version=NEWER,
                              signer=keys.signer, kind=ImageKind.METROLOGY))
    ok, why = verify(f)
    assert ok is False and why is not None and why.startswith("METROLOGY_REFUSED: ")
    assert "manifest" in why


@pytest.mark.parametrize("image_type, reason", [
    (APPLICATION_IMAGE_TYPE + 0x10, "WRONG_IMAGE_TYPE"),
    (METROLOGY_IMAGE_TYPE, "METROLOGY_REFUSED"),
])
def test_an_offer_of_another_image_type_is_refused(image_type: int, reason: str) -> None:
    _, precheck = make_gate(None, DEVICE)  # the offer check needs no trust
    why = precheck(ImageIdent(MFR, image_type, NEWER, 1000))
    assert why is not None and why.startswith(f"{reason}: ") and why.count(reason) == 1
    assert precheck(ImageIdent(MFR, APPLICATION_IMAGE_TYPE, NEWER, 1000)) is None


def test_an_unreadable_image_says_so(keys: TestKeys, tmp_path: Path) -> None:
    write_key_dir(tmp_path / "trust", keys.ca, keys.signer)
    verify, _ = make_gate(tmp_path / "trust", DEVICE)
    ok, why = verify(tmp_path / "missing.ota")
    assert ok is False and why is not None
    assert why.startswith("cannot read the stored image: ") and "missing.ota" in why


def test_no_trust_is_said_once_as_information(keys: TestKeys, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="sep.ota.gate"):
        verify, _ = make_gate(None, DEVICE)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "no trust directory configured: every image is refused")]
    f = tmp_path / "good.ota"
    f.write_bytes(build_image(b"fw" * 8, manufacturer_code=MFR,
                              image_type=APPLICATION_IMAGE_TYPE, file_version=NEWER,
                              signer=keys.signer))
    assert verify(f) == (False, "no trust directory configured: every image is refused")


@pytest.mark.parametrize("broken", ["missing", "empty", "ca.pub a directory"])
def test_a_broken_trust_directory_is_a_warning(keys: TestKeys, tmp_path: Path, broken: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "trust"
    if broken != "missing":
        d.mkdir()
    if broken == "ca.pub a directory":
        write_key_dir(d, keys.ca, keys.signer)
        (d / "ca.pub").unlink()
        (d / "ca.pub").mkdir()
    with caplog.at_level(logging.DEBUG, logger="sep.ota.gate"):
        verify, _ = make_gate(d, DEVICE)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    said = caplog.records[0].getMessage()
    assert said.startswith("trust directory unusable (") and said.endswith(
        "): every image is refused")
    assert verify(tmp_path / "any.ota") == (False, said)


def test_a_good_trust_directory_is_silent(keys: TestKeys, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    write_key_dir(tmp_path / "trust", keys.ca, keys.signer)
    with caplog.at_level(logging.DEBUG, logger="sep.ota.gate"):
        make_gate(tmp_path / "trust", DEVICE)
    assert not caplog.records
