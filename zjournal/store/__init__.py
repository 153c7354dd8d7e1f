"""Stores: the key-value engines a journal can sit on (see :mod:`zjournal.store.base`)."""

from zjournal.store.base import TABLES, Batch, Store
from zjournal.store.memory import MemoryStore
from zjournal.store.rocks import RocksStore

__all__ = ["TABLES", "Batch", "MemoryStore", "RocksStore", "Store"]
