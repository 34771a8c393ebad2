"""The one gate every image passes before the meter uses it: verification + policy.

Builds the callables the OTA client (pre-download offer check) and the updater (full
check of the stored file) need, from the trust directory and the device's identity. A
missing or unreadable trust directory means every image is refused, never accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sep.firmware.errors import ImageError
from sep.firmware.keys import KeyMaterialError, load_trust
from sep.firmware.policy import DeviceIdentity, check_offer, check_policy
from sep.firmware.verify import check_image
from sep.ota.client import ImageIdent

LOGGER = logging.getLogger(__name__)


def make_gate(trust_dir: Path | None, device: DeviceIdentity) -> tuple[
        Callable[[Path], tuple[bool, str | None]], Callable[[ImageIdent], str | None]]:
    """(verify(path) -> (ok, reason), precheck(offer) -> reason or None)."""
    trust = None
    problem = None
    if trust_dir is None:
        problem = "no trust directory configured: every image is refused"
    else:
        try:
            trust = load_trust(trust_dir)
        except (KeyMaterialError, OSError) as exc:
            problem = f"trust directory unusable ({exc}): every image is refused"
    if problem:  # no trust is a choice (the default): said once more when an image comes
        (LOGGER.info if trust_dir is None else LOGGER.warning)(problem)

    def verify(path: Path) -> tuple[bool, str | None]:
        if trust is None:
            return False, problem
        try:
            image, manifest = check_image(path.read_bytes(), trust)
            check_policy(image, device, manifest)
        except ImageError as exc:
            return False, f"{exc.reason}: {exc.message}"
        except OSError as exc:
            return False, f"cannot read the stored image: {exc}"
        return True, None

    def precheck(offer: ImageIdent) -> str | None:
        try:
            check_offer(device, manufacturer_code=offer.manufacturer,
                        image_type=offer.image_type, file_version=offer.file_version)
        except ImageError as exc:
            return f"{exc.reason}: {exc.message}"
        return None

    return verify, precheck
