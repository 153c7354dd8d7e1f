"""After ``fork()``: a child never touches the journals its parent had open.

A forked child inherits the parent's RocksDB handles, but not RocksDB's
background threads. Dropping an inherited handle (at the child's exit, or
when the child garbage-collects it) flushes its memtables: that writes into
the parent's live directory and then waits forever for a flush thread that
does not exist in the child. So in the child every inherited store is
*abandoned*: its native objects are kept alive to the end of the process
(never dropped, never flushed), and the journal on it (its slot files are
shared mappings of the parent's) raises :class:`JournalForkedError` on use.

RocksDB keeps process-wide state that does not survive a fork either: its
thread pools. A child inherits the pools' condition variables with the
parent's idle threads still counted as waiting on them, and its first flush
then waits forever for those threads to quiesce (seen in gdb: in
``pthread_cond_signal``). So right before a fork, once every database this
process opened is idle, the pools are emptied (their threads exit, nothing
waits on them any more) and filled again on both sides after the fork: the
child gets threads of its own and may open journals of its own. When a
database is still busy in the background (a flush or a compaction running
or due) after a bounded wait, the fork goes on without that, and the child
is refused with one clear error if it tries to open a journal: a queued job
of the parent's would run in the child, against the parent's files.
"""

from __future__ import annotations

import ctypes
import os
import time
import weakref
from typing import Any

import rocksdict

from zjournal.errors import JournalForkedError, JournalOpenError

_owned: weakref.WeakSet[Any] = weakref.WeakSet()  # what to abandon in a forked child
_databases: weakref.WeakSet[Any] = weakref.WeakSet()  # stores with a live database: busy_in_background()
_opened_in: int | None = None  # the pid whose RocksDB state this process has (None: never used here)
_may_open = True  # False in a child forked while RocksDB was busy: opening would run the parent's jobs

# RocksDB's pools as every journal opens them (max_background_jobs=2: one flush, one compaction thread)
_FLUSH_THREADS = 1
_COMPACTION_THREADS = 1
_IDLE_WAIT = 2.0  # seconds a fork waits for the databases' background work to finish


def opened(store: Any) -> None:
    """A store opened a RocksDB database in this process (it has ``busy_in_background()``)."""
    global _opened_in
    if _opened_in is None:
        _opened_in = os.getpid()
    _owned.add(store)
    _databases.add(store)


def open_here(path: str) -> bool:
    """Whether this process holds the journal at ``path`` open as its owner (a store that ``owns`` it)."""
    where = os.path.realpath(path)
    return any(
        getattr(store, "owns", False) and not store._closed and os.path.realpath(store.path) == where
        for store in list(_databases)
    )


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
    """Refuse to open a database in a child forked while its parent's RocksDB was busy."""
    if not _may_open:
        raise JournalOpenError(
            f"cannot open journal {path}: this process was forked from process {os.getppid()} while its "
            "journals were busy in the background (a flush or compaction), and RocksDB cannot run in such "
            "a child; fork before opening journals, or start the child with multiprocessing's 'spawn' or "
            "'forkserver'",
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


def _busy() -> bool:
    return any(store.busy_in_background() for store in list(_databases))


def _rocksdb_threads() -> int:
    """RocksDB's pool threads alive in this process (they name themselves ``rocksdb:<pool>``)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm", "rb") as f:
                count += f.read().startswith(b"rocksdb:")
        except OSError:  # the thread ended while we looked
            pass
    return count


def _set_pools(flush: int, compaction: int) -> None:
    env = rocksdict.Env()
    env.set_high_priority_background_threads(flush)
    env.set_low_priority_background_threads(compaction)


def _wait(done: Any) -> bool:
    deadline = time.monotonic() + _IDLE_WAIT
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


_pools_emptied = False  # between the before- and after-fork hooks: the pools were set to no threads
_child_may_open = False  # ... and the child inherits neither threads nor queued jobs


def _before_fork() -> None:
    """Empty RocksDB's pools once the databases are idle, so that a child can run RocksDB of its own."""
    global _pools_emptied, _child_may_open
    _pools_emptied = _child_may_open = False
    if _opened_in is None or not os.path.isdir("/proc/self/task"):
        return  # RocksDB never ran here (or no way to see its threads: the child may not open)
    try:
        if not _wait(lambda: not _busy()):
            return
        _set_pools(0, 0)  # idle threads wake, see they are one too many, and exit
        _pools_emptied = True
        # A job scheduled meanwhile waits in the queue (no thread takes it): the child must not inherit it.
        _child_may_open = _wait(lambda: _rocksdb_threads() == 0) and not _busy()
    except Exception:  # a database closed meanwhile, /proc unreadable: the child just may not open
        _child_may_open = False


def _after_fork_in_parent() -> None:
    if _pools_emptied:
        _set_pools(_FLUSH_THREADS, _COMPACTION_THREADS)


def _after_fork_in_child() -> None:
    global _may_open
    if _opened_in is None:
        return  # RocksDB never ran in the parent: nothing inherited
    parent = os.getppid()
    for owner in list(_owned):
        owner.abandon(parent)
    _owned.clear()
    _databases.clear()
    _skip_rocksdbs_exit_handlers()
    _may_open = _child_may_open
    if _may_open:
        _set_pools(_FLUSH_THREADS, _COMPACTION_THREADS)  # threads of the child's own


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
