"""After ``fork()``: a child never touches the journals its parent had open.

A forked child inherits the parent's RocksDB handles, but not RocksDB's
background threads. Dropping an inherited handle (at the child's exit, or
when the child garbage-collects it) flushes its memtables: that writes into
the parent's live directory and then waits forever for a flush thread that
does not exist in the child. So in the child every inherited store is
*abandoned*: its native objects are kept alive to the end of the process
(never dropped, never flushed), and the journal on it (its slot files are
shared mappings of the parent's) raises :class:`JournalForkedError` on use.

RocksDB keeps process-wide state (its thread pools) that does not survive a
fork either: measured with rocksdict 0.3.29, a child that opens a new
database after its parent had opened one hangs at its first flush, even
when the parent had closed it and joined RocksDB's threads before forking.
Such a child is refused with one clear error instead of hanging; a child of
a parent that never opened a journal (a pre-fork server's workers, a
``multiprocessing`` pool started before any journal) opens its own as usual.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from typing import Any

from zjournal.errors import JournalForkedError, JournalOpenError

_owned: weakref.WeakSet[Any] = weakref.WeakSet()  # what to abandon in a forked child
_opened_in: int | None = None  # the pid that opened a RocksDB database first (None: none yet)


def opened(store: Any) -> None:
    """A store opened a RocksDB database in this process."""
    global _opened_in
    if _opened_in is None:
        _opened_in = os.getpid()
    _owned.add(store)


def track(owner: Any) -> None:
    """``owner.abandon(parent_pid)`` is called in a forked child (a journal, a store)."""
    _owned.add(owner)


def forked_error(path: str | None, owner: int) -> JournalForkedError:
    return JournalForkedError(
        f"journal {path} belongs to process {owner}; this process is a child forked from it and may not "
        "use it (open a journal of its own after forking)",
        path=path,
        owner=owner,
    )


def check_can_open(path: str) -> None:
    """Refuse to open a database in a child forked after its parent opened one (RocksDB would hang)."""
    if _opened_in is not None and _opened_in != os.getpid():
        raise JournalOpenError(
            f"cannot open journal {path}: this process was forked from process {_opened_in} after it had "
            "opened a journal, and RocksDB cannot run in such a child; open journals only after forking, "
            "or start the child with multiprocessing's 'spawn' or 'forkserver'",
            path=path,
        )


def keep_forever(*objects: Any) -> None:
    """Never let these objects be dropped (their destructor would touch the parent's files)."""
    for obj in objects:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _skip_rocksdbs_exit_handlers() -> None:
    """End this child with ``_exit(status)`` once Python is done, before RocksDB's static destructors run.

    At ``exit()``, RocksDB joins the background threads of its thread pools:
    in a forked child those are the parent's, which do not exist here, and
    the join crashes the child (SIGSEGV, seen in gdb). glibc's ``on_exit``
    passes the exit status to its handler, and handlers run newest first, so
    ``_exit`` registered now runs before RocksDB's (registered at load) with
    the status the child chose. Python flushes its own streams before that.
    """
    try:
        libc = ctypes.CDLL(None)
        register, end = libc.on_exit, libc._exit
    except (OSError, AttributeError):  # not glibc: nothing to do there
        return
    register.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    register(ctypes.cast(end, ctypes.c_void_p), None)  # _exit(status, arg): the extra argument is ignored


def _after_fork_in_child() -> None:
    if _opened_in is None:
        return  # RocksDB never ran in the parent: nothing inherited
    parent = os.getppid()
    for owner in list(_owned):
        owner.abandon(parent)
    _owned.clear()
    _skip_rocksdbs_exit_handlers()


os.register_at_fork(after_in_child=_after_fork_in_child)
