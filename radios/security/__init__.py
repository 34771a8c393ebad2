"""Zigbee PRO security in the radio, where a stick's firmware keeps it: CCM* sealing of NWK
and APS frames (``codec``), the key table and frame counters with replay protection
(``keys``), and the counters of what was dropped and why (``stats``)."""
