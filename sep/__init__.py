"""Zigbee Smart Energy application processor."""

__version__ = "0.1.0"
