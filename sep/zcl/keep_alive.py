"""Keep-Alive (0x0025), SE 1.4 Annex A.3 / the Keep-Alive cluster, on zigpy's own table.

zigpy defines the cluster fully (TC Keep-Alive Base 0x0000, uint8, minutes; TC Keep-Alive
Jitter 0x0001, uint16, seconds; no commands), so it is used as it is. The trust centre
serves it; a joined device reads both attributes every Base minutes plus a random 0..Jitter
seconds, and after :data:`FAILURE_LIMIT` keep-alives in a row without a valid answer
treats the trust centre as gone: it searches for it (other channels, the same extended
PAN id), rejoins and establishes its keys again (SE 1.x 5.4.2.2.3.4: the limit "shall be
three").
"""

from __future__ import annotations

from zigpy.zcl.clusters.general import KeepAlive

BASE = 0x0000
JITTER = 0x0001
BASE_MIN, BASE_MAX = 0x01, 0xFF  # minutes
JITTER_MIN, JITTER_MAX = 0x0000, 0x0200  # seconds
DEFAULT_BASE = 10  # minutes, until the trust centre says otherwise
DEFAULT_JITTER = 300  # seconds
FAILURE_LIMIT = 3

__all__ = ["BASE", "BASE_MAX", "BASE_MIN", "DEFAULT_BASE", "DEFAULT_JITTER", "FAILURE_LIMIT",
           "JITTER", "JITTER_MAX", "JITTER_MIN", "KeepAlive"]
