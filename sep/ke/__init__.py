"""Key Establishment in motion: the asyncio shells around the sans-IO CBKE core
(:mod:`sep.clusters.key_establishment`) — :mod:`sep.ke.executor` runs its elliptic-curve
maths off the event loop (threads or worker processes), :mod:`sep.ke.service` serves
cluster 0x0800 on a zigpy application and puts the keys it makes into the radio."""
