"""Journaled copies of pyzmq sockets: of the application's own socket class, sharing its handle."""

from __future__ import annotations

import sys

import zmq

from zjournal.sockets.socket import JournaledSocket

_classes: dict[type, type] = {zmq.Socket: JournaledSocket}


def journaled_class(cls: type) -> type:
    """The journaled class of a ``zmq.Socket`` subclass: the application's class first, then ours.

    So the wrapped socket is still an instance of the application's class,
    with its methods and attributes, and its overrides of ``send``/``recv``
    run before (and through) the journaling ones.
    """
    journaled = _classes.get(cls)
    if journaled is None:
        bases: tuple[type, ...] = (cls, JournaledSocket)
        if _is_green(cls):
            from zjournal.sockets.green import GreenWaits

            bases = (GreenWaits, *bases)  # (its waits are gevent's: zjournal.sockets.green)
        journaled = type(f"Journaled{cls.__name__}", bases, {})
        journaled.__module__ = __name__
        _classes[cls] = journaled
    return journaled


def _is_green(cls: type) -> bool:
    """Whether ``cls`` is a zmq.green socket class (only when the application uses zmq.green: never imported here)."""
    green = sys.modules.get("zmq.green.core")
    return green is not None and issubclass(cls, green._Socket)


def copy_attributes(origin: zmq.Socket, wrapped: zmq.Socket) -> None:
    """The application's own attributes of ``origin`` (set by its subclass's __init__), onto ``wrapped``.

    pyzmq's own (the type, the shadow, an async socket's futures) are already
    in ``wrapped``, made for it: those stay.
    """
    mine = wrapped.__dict__
    for key, value in vars(origin).items():
        if key not in mine:
            mine[key] = value  # not setattr: pyzmq would take unknown names for socket options


def journaled_copy(sock: zmq.Socket) -> JournaledSocket:
    """A journaled socket sharing ``sock``'s handle, of ``sock``'s own class."""
    cls = journaled_class(type(sock))
    if cls is JournaledSocket:
        return JournaledSocket.shadow(sock)
    wrapped = cls.__new__(cls)  # not cls(...): the application's __init__ may want arguments of its own
    if _is_green(cls):
        # A zmq.green socket waits for a greenlet on events its descriptor's watcher sets, bound to the
        # socket that made them: the copy needs its own (the original's would wake the original's waits
        # only, and a blocking recv on the copy would wait for gevent's 11.6 s safety timeout instead).
        sys.modules["zmq.green.core"]._Socket.__init__(wrapped, shadow=sock)
    else:
        zmq.Socket.__init__(wrapped, shadow=sock)
    copy_attributes(sock, wrapped)
    return wrapped
