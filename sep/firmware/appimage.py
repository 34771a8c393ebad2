"""This application as an OTA payload: a zipapp of the ``sep``, ``radios`` and ``hubsim``
packages whose ``__main__`` is the ``sep`` command line.

Third-party dependencies (zigpy, bellows, cryptography ...) are not inside: the image is
the application processor's own code, run by the device's Python, as a firmware image is
run by the device's boot ROM. The zip is built deterministically (sorted entries, fixed
timestamps) so the same tree gives the same bytes and the same signature digest.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

PACKAGES = ("sep", "radios", "hubsim")
APP_MANUFACTURER_CODE = 0x1234  # the manufacturer code this meter application uses
MAIN = "import sys\nfrom sep.cli import main\nsys.exit(main())\n"
_EPOCH = (2000, 1, 1, 0, 0, 0)


def package_root() -> Path:
    import sep

    return Path(sep.__file__).resolve().parent.parent


def build_app_payload(root: Path | None = None) -> bytes:
    root = root or package_root()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        files = sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")
                       if "__pycache__" not in p.parts)
        for path in files:
            info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
        info = zipfile.ZipInfo("__main__.py", date_time=_EPOCH)
        z.writestr(info, MAIN)
    return buf.getvalue()
