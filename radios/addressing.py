"""Stochastic NWK addressing (Zigbee PRO 3.6.1.7) that always ends.

A parent draws random addresses from 0x0001..0xFFF7 until one is not known to be taken.
Each draw costs one look-up in a set or dict; after ``draws`` misses (a very full
network: with 1,000 nodes the chance of 64 misses in a row is about 10**-190) one sweep
from a random start visits every address once, so the search ends after at most
0xFFF7 + ``draws`` look-ups whatever the network holds, and says so when it is full.

A random address can still collide with one the parent cannot see (a node that was away,
another parent choosing at the same moment): that is what address conflict detection
(3.6.1.9, ``radios/node.py``) is for.
"""

from __future__ import annotations

from collections.abc import Callable

FIRST = 0x0001
LAST = 0xFFF7  # 0xFFF8..0xFFFF are broadcast and reserved addresses
SPACE = LAST - FIRST + 1
DEFAULT_DRAWS = 64


class AddressSpaceFull(RuntimeError):
    """Every NWK address of the PAN is taken."""


def stochastic_address(draw: Callable[[int], int], taken: Callable[[int], bool], *,
                       draws: int = DEFAULT_DRAWS) -> int:
    """A random NWK address for which ``taken`` is False.

    ``draw(n)`` returns a random integer in ``0..n-1`` (``secrets.randbelow``,
    ``random.Random().randrange``); ``taken(addr)`` says whether ``addr`` is in use."""
    for _ in range(draws):
        addr = FIRST + draw(SPACE)
        if not taken(addr):
            return addr
    start = draw(SPACE)
    for i in range(SPACE):
        addr = FIRST + (start + i) % SPACE
        if not taken(addr):
            return addr
    raise AddressSpaceFull("no free NWK address on this PAN")
