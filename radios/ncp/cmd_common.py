"""What the EZSP core and its command handlers share, below both of them.

:mod:`radios.ncp.ezsp` builds :class:`~radios.ncp.ezsp.EzspNcp` from the ``cmd_*`` mixins,
so the mixins cannot import from it at run time; what both need lives here: bellows' v13
command table, the emulated firmware's identity, and the status conversions. A handler
answers in ``sl_Status`` (``S``); v13 schemas still type some status fields as
``EmberStatus`` or ``EzspStatus``, and :func:`radios.ncp.ezsp.serialize_fields` converts
with :func:`sl_to` (and writes a :func:`sl_or_ezsp` marker as the field's type wants).
"""

from __future__ import annotations

from typing import Any

import bellows.types as bt
import zigpy.types as zt
from bellows.ezsp.v13 import commands as v13_commands

STACK_TYPE = 2  # mesh
STACK_VERSION = (7, 4, 4, 0)
STACK_BUILD = 244

COMMANDS: dict[str, tuple[int, Any, Any]] = v13_commands.COMMANDS

S = bt.sl_Status
Ezsp = bt.EzspStatus

# bellows' own map (EmberStatus|EzspStatus -> sl_Status), turned round
_FROM_SL: dict[tuple[type, S], Any] = {}
for (_kind, _value), _sl in bt.SL_STATUS_MAP.items():
    _FROM_SL.setdefault((_kind, _sl), _value)


def sl_to(kind: Any, status: S) -> Any:
    """An sl_Status in the status type a schema field has (EmberStatus, EzspStatus...)."""
    if kind is S or not isinstance(kind, type) or not issubclass(kind, zt.enum8 | zt.enum32):
        return status
    value = _FROM_SL.get((kind, status))
    if value is None:
        value = _FROM_SL.get((kind, S.FAIL), 0x01)
    return kind(value)


def sl_or_ezsp(status: bt.EzspStatus) -> Any:
    """An EzspStatus where a schema says sl_Status/EzspStatus (v13 mixes them)."""
    return EzspAsSl(status)


class EzspAsSl:
    """Marks an EzspStatus; :func:`radios.ncp.ezsp.serialize_fields` writes it as the
    field's type wants."""

    def __init__(self, status: bt.EzspStatus) -> None:
        self.status = status

    def __repr__(self) -> str:
        return f"<{self.status!r}>"
