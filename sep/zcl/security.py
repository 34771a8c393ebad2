"""Which Smart Energy frames need APS security (SE 1.x 5.4.6, "cluster usage of
security keys").

On the SE profile (0x0109) every cluster is protected with the APS link key shared with
the partner, except the few that must work before or without one: Basic, Power
Configuration, Identify, Time, Commissioning, OTA Upgrade, Keep-Alive and Key
Establishment itself, which run under the network key only. Frames on other profiles
(ZDO, a Home Automation host reading the meter) follow their own rules: network key.
"""

from __future__ import annotations

SE_PROFILE = 0x0109

NETWORK_KEY_CLUSTERS = frozenset({
    0x0000,  # Basic
    0x0001,  # Power Configuration
    0x0003,  # Identify
    0x000A,  # Time
    0x0015,  # Commissioning
    0x0019,  # OTA Upgrade
    0x0025,  # Keep-Alive
    0x0800,  # Key Establishment
})


def requires_aps_security(profile: int, cluster: int) -> bool:
    """Whether a frame of (profile, cluster) must travel APS-encrypted under a link key."""
    return profile == SE_PROFILE and cluster not in NETWORK_KEY_CLUSTERS
