"""Integrity-checked non-volatile storage and the tamper-evident event log."""

from sep.store.db import CheckReport, CorruptRecord, Event, Store

__all__ = ["CheckReport", "CorruptRecord", "Event", "Store"]
