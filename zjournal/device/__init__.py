"""The journaled queue device (``zjournal.Queue``, ``zjournal device``)."""

from zjournal.device.correlation import envelope_size
from zjournal.device.queue import Queue, check_settings, frontend_frame_limit, stop_on_signals
from zjournal.device.report import QueueStats, StopReport

__all__ = [
    "Queue",
    "QueueStats",
    "StopReport",
    "check_settings",
    "envelope_size",
    "frontend_frame_limit",
    "stop_on_signals",
]
