"""The files sockets map (slot files, outboxes): creating one, and the descriptor kept beside the mapping."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

from zjournal.errors import StoreError


def create_file(path: str, what: str) -> int:
    """A new file's descriptor; FileExistsError (the caller takes the next name), else StoreError.

    No descriptor left (EMFILE) is a StoreError like a full disk: the socket
    journals in the store instead, and ``wrap`` still succeeds.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise
    except OSError as e:
        raise StoreError(f"cannot create the {what} {path}: {e}") from e


def sync(fd: int, mm: mmap.mmap, fdatasync: Callable[[int], None]) -> None:
    """Make a mapped file's data durable: ``fdatasync(fd)`` where a descriptor is kept, else msync.

    (``fdatasync``: the caller's module's, where a probe or the power-loss
    harness may watch it.)
    """
    if fd >= 0:
        fdatasync(fd)  # writes the mapping's dirty pages too (Linux page cache)
    else:
        mm.flush()  # msync(MS_SYNC): the same, through the mapping


def close_descriptor(fd: int) -> int:
    """Close a mapped file's descriptor the journal will not fsync through; -1 (what ``fd`` becomes).

    Python's mmap keeps a descriptor of its own, so a slot file kept two per
    socket: in ``process`` mode, where nothing fsyncs it but an explicit
    ``journal.sync()`` (through the mapping: msync), one is enough, and
    descriptors per socket are what a process with many sockets runs out of first.
    """
    if fd >= 0:
        os.close(fd)
    return -1
