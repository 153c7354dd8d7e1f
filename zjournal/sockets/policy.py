"""Ack policies and message classes: when an entry is done, and whether it is journaled at all."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import zmq

from zjournal.errors import InvalidArgumentError


class AckPolicy(enum.StrEnum):
    """What acknowledges an entry (see the README's table)."""

    REPLY = "reply"  # REQ: the reply arrives; REP: the reply is sent
    NEXT = "next"  # inbound: the application asks the same socket for the next message
    SENT = "sent"  # outbound: ZeroMQ accepted the message
    EXPLICIT = "explicit"  # the application calls ack()


class MessageClass(enum.StrEnum):
    """``durable``: journaled and replayed; ``ephemeral``: never written to disk."""

    DURABLE = "durable"
    EPHEMERAL = "ephemeral"


# Socket types that only ever receive / only ever send.
_RECEIVE_ONLY = {zmq.PULL, zmq.SUB}
_SEND_ONLY = {zmq.PUSH, zmq.PUB}
_XPUB = getattr(zmq, "XPUB", None)
_XSUB = getattr(zmq, "XSUB", None)


def policies_for(socket_type: int, ack: str | AckPolicy | None) -> tuple[AckPolicy | None, AckPolicy | None]:
    """(inbound policy, outbound policy) for a socket type; None: that direction is not journaled.

    REQ journals its requests (acked by their reply) and not the replies; REP
    journals requests (acked when it replies) and not the replies. Other
    types journal both directions they use.
    """
    chosen = None if ack is None else _parse_policy(ack)
    if socket_type in (zmq.REQ, zmq.REP):
        if chosen in (AckPolicy.NEXT, AckPolicy.SENT):
            raise InvalidArgumentError(f"ack={chosen.value!r} does not fit a REQ/REP socket: use 'reply' or 'explicit'")
        policy = chosen or AckPolicy.REPLY
        return (None, policy) if socket_type == zmq.REQ else (policy, None)
    if chosen is AckPolicy.REPLY:
        raise InvalidArgumentError("ack='reply' is for REQ and REP sockets only")
    inbound = (
        None if socket_type in _SEND_ONLY else (AckPolicy.EXPLICIT if chosen is AckPolicy.EXPLICIT else AckPolicy.NEXT)
    )
    outbound = (
        None
        if socket_type in _RECEIVE_ONLY
        else (AckPolicy.EXPLICIT if chosen is AckPolicy.EXPLICIT else AckPolicy.SENT)
    )
    if chosen is AckPolicy.NEXT and inbound is None:
        raise InvalidArgumentError("ack='next' is for sockets that receive")
    if chosen is AckPolicy.SENT and outbound is None:
        raise InvalidArgumentError("ack='sent' is for sockets that send")
    return inbound, outbound


def _parse_policy(value: str | AckPolicy) -> AckPolicy:
    try:
        return AckPolicy(value)
    except ValueError:
        names = ", ".join(p.value for p in AckPolicy)
        raise InvalidArgumentError(f"unknown ack policy {value!r}: expected one of {names}") from None


def resolve_ack(socket_type: int, ack: str | AckPolicy | None) -> tuple[AckPolicy | None, AckPolicy | None, Any]:
    """(inbound policy, outbound policy, plugin handler) for the ``ack`` option of ``wrap``.

    A name that is not a built-in policy is looked up among the plugins' ack
    policies: the plugin's handler then acks inbound entries itself (the
    socket treats them as ``explicit``) and outbound ones keep the defaults.
    """
    if ack is None or isinstance(ack, AckPolicy) or ack in AckPolicy._value2member_map_:
        return (*policies_for(socket_type, ack), None)
    from zjournal.plugins import load

    factory = load().ack_policies().get(ack)
    if factory is None:
        names = ", ".join([p.value for p in AckPolicy] + sorted(load().ack_policies()))
        raise InvalidArgumentError(f"unknown ack policy {ack!r}: expected one of {names}")
    inbound, outbound = policies_for(socket_type, None)
    if socket_type in (zmq.REQ, zmq.REP):
        inbound = AckPolicy.EXPLICIT if socket_type == zmq.REP else None
    elif inbound is not None:
        inbound = AckPolicy.EXPLICIT
    return inbound, outbound, factory(socket_type)


ClassifyRule = (
    str
    | MessageClass
    | Mapping[bytes | str, str | MessageClass]
    | Callable[[Sequence[bytes]], str | MessageClass | bool]
    | None
)

# A compiled classifier: body frames -> True when the message is durable. None: always durable.
Classifier = Callable[[Sequence[bytes]], bool] | None


def _parse_class(value: str | MessageClass | bool) -> bool:
    if value is True or value is False:
        return value
    try:
        return MessageClass(value) is MessageClass.DURABLE
    except ValueError:
        raise InvalidArgumentError(f"unknown message class {value!r}: expected 'durable' or 'ephemeral'") from None


def compile_classifier(rule: ClassifyRule) -> Classifier:
    """Turn the ``classify`` option into a function of the body frames.

    * ``None`` or ``"durable"``: every message is journaled;
    * ``"ephemeral"``: none is;
    * a mapping of first-frame prefixes to classes: the longest matching
      prefix wins; a message no prefix matches is durable unless the mapping
      has a ``b""`` (or ``""``) key;
    * a callable taking the body frames and returning a class (or True for durable).
    """
    if rule is None:
        return None
    if isinstance(rule, str) and rule not in MessageClass._value2member_map_:
        from zjournal.plugins import load

        named = load().classifiers().get(rule)
        if named is None:
            known = ", ".join(["durable", "ephemeral", *sorted(load().classifiers())])
            raise InvalidArgumentError(f"unknown message class or classifier {rule!r}: expected one of {known}")
        rule = named
    if isinstance(rule, (str, MessageClass)):
        durable = _parse_class(rule)
        return None if durable else (lambda frames: False)
    if isinstance(rule, Mapping):
        prefixes = sorted(
            ((p.encode() if isinstance(p, str) else bytes(p), _parse_class(c)) for p, c in rule.items()),
            key=lambda item: -len(item[0]),
        )

        def by_prefix(frames: Sequence[bytes]) -> bool:
            first = frames[0] if frames else b""
            for prefix, durable in prefixes:
                if first.startswith(prefix):
                    return durable
            return True

        return by_prefix
    if callable(rule):

        def by_callable(frames: Sequence[bytes]) -> bool:
            return _parse_class(rule(frames))

        return by_callable
    raise InvalidArgumentError(f"classify must be a class name, a prefix mapping or a callable, not {rule!r}")
