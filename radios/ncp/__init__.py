"""An EZSP network co-processor emulator: the device side of ASH and EZSP, on the virtual air.

Unmodified bellows (the host side) talks to it over TCP (``socket://HOST:PORT``) or a pty,
as it would to a Silicon Labs stick. Layers, each sans-IO except the shell:

- :mod:`radios.ncp.ash` — ASH framing, acknowledgement and retransmission (device side);
- :mod:`radios.ncp.ezsp` (+ ``cmd_*.py``) — the EZSP frame layer and the command set bellows uses, on
  bellows' own command tables and types;
- :mod:`radios.ncp.state` — the NCP's non-volatile state (network, keys, tokens) as JSON;
- :mod:`radios.ncp.node` — the emulated stack as a node on :class:`radios.air.VirtualAir`;
- :mod:`radios.ncp.server` — the asyncio shell: TCP listener, pty, timers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radios.ncp.server import NcpEmulator, start_emulator

__all__ = ["NcpEmulator", "start_emulator"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from radios.ncp import server

        return getattr(server, name)
    raise AttributeError(name)
