"""The journaled queue device (``zjournal.Queue``, ``zjournal device``).

- ``queue``: :class:`Queue`, its loop, the workers and the replies; ``intake``: the requests it reads
  from the frontend and journals;
- ``correlation``: the tag that pairs a reply with its request; ``resends``: a REQ client's resends
  recognised; ``report``: its statistics, drops and stop report.
"""

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
