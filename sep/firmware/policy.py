"""Update policy: is this (already verified) image meant for this device, and allowed?

The OTA client calls :func:`check_policy` (raises the first :class:`ImageError`) or
:func:`policy_errors` (every failed rule). Rules, in order:

1. metrology firmware is never accepted over the air: the image type is one of the device's
   metrology image types, or the manifest says kind = metrology (``METROLOGY_REFUSED``);
2. manufacturer code = the device's (``WRONG_MANUFACTURER``);
3. image type = the device's (``WRONG_IMAGE_TYPE``);
4. if the header carries a hardware range (or the manifest a narrower one than "any"), the
   device's hardware version lies inside it; an unknown hardware version fails
   (``HARDWARE_MISMATCH``);
5. a device-specific file (upgrade file destination present) names this device's IEEE
   (``WRONG_DESTINATION``);
6. no downgrade and no re-install: file version > the running version (``DOWNGRADE``).

Policy is checked as well as -- never instead of -- verification (:mod:`sep.firmware.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import zigpy.types as t

from sep.firmware.errors import ImageError, Reason
from sep.firmware.format import OtaHeader, OtaImage
from sep.firmware.manifest import ANY_HARDWARE, ImageKind, Manifest

# Our product's image types (manufacturer-specific range 0x0000..0xFFBF).
APPLICATION_IMAGE_TYPE = 0x0001
METROLOGY_IMAGE_TYPE = 0x0002


@dataclass(frozen=True)
class DeviceIdentity:
    """What the running device is."""

    manufacturer_code: int
    image_type: int
    current_file_version: int
    hardware_version: int | None = None
    ieee: t.EUI64 | None = None
    metrology_image_types: frozenset[int] = field(
        default_factory=lambda: frozenset({METROLOGY_IMAGE_TYPE})
    )


def policy_errors(
    image: OtaImage | OtaHeader, device: DeviceIdentity, manifest: Manifest | None = None
) -> list[ImageError]:
    """Every policy rule the image breaks (empty list: acceptable)."""
    header = image.header if isinstance(image, OtaImage) else image
    errors: list[ImageError] = []

    if header.image_type in device.metrology_image_types:
        errors.append(
            ImageError(
                Reason.METROLOGY_REFUSED,
                f"image type 0x{header.image_type:04X} is metrology firmware; never updated over the air",
            )
        )
    elif manifest is not None and manifest.kind == ImageKind.METROLOGY:
        errors.append(
            ImageError(
                Reason.METROLOGY_REFUSED, "manifest kind is metrology; never updated over the air"
            )
        )

    if header.manufacturer_code != device.manufacturer_code:
        errors.append(
            ImageError(
                Reason.WRONG_MANUFACTURER,
                f"manufacturer 0x{header.manufacturer_code:04X}, this device is 0x{device.manufacturer_code:04X}",
            )
        )
    if header.image_type != device.image_type:
        errors.append(
            ImageError(
                Reason.WRONG_IMAGE_TYPE,
                f"image type 0x{header.image_type:04X}, this device takes 0x{device.image_type:04X}",
            )
        )

    ranges = []
    if header.hardware_range is not None:
        ranges.append(("header", header.hardware_range))
    if manifest is not None and manifest.hardware_range != ANY_HARDWARE:
        ranges.append(("manifest", manifest.hardware_range))
    for where, (lo, hi) in ranges:
        hw = device.hardware_version
        if hw is None or not lo <= hw <= hi:
            shown = "unknown" if hw is None else f"0x{hw:04X}"
            errors.append(
                ImageError(
                    Reason.HARDWARE_MISMATCH,
                    f"hardware version {shown} outside the {where} range 0x{lo:04X}..0x{hi:04X}",
                )
            )
            break

    dest = header.upgrade_file_destination
    if dest is not None and (device.ieee is None or dest != device.ieee):
        errors.append(
            ImageError(
                Reason.WRONG_DESTINATION,
                f"device-specific file for {dest}, this device is {device.ieee}",
            )
        )

    if header.file_version <= device.current_file_version:
        errors.append(
            ImageError(
                Reason.DOWNGRADE,
                f"file version 0x{header.file_version:08X} is not newer than the running "
                f"0x{device.current_file_version:08X}",
            )
        )
    return errors


def check_policy(
    image: OtaImage | OtaHeader, device: DeviceIdentity, manifest: Manifest | None = None
) -> None:
    """Raise the first policy failure as :class:`ImageError`; return ``None`` when acceptable."""
    errors = policy_errors(image, device, manifest)
    if errors:
        raise errors[0]


def check_offer(
    device: DeviceIdentity, *, manufacturer_code: int, image_type: int, file_version: int
) -> None:
    """Pre-download check of a Query Next Image Response offer (no header fetched yet)."""
    check_policy(
        OtaHeader(
            manufacturer_code=manufacturer_code, image_type=image_type, file_version=file_version
        ),
        device,
    )
