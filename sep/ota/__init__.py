"""Firmware in motion on the meter: the sans-IO OTA client (``client``), its asyncio shell
(``service``), the durable download (``staging``), the pre-download gate (``gate``), apply
and confirm (``updater``) and the A/B supervisor (``supervisor``)."""
