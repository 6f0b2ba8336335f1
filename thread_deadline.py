"""Time limits for Python code in any thread, without signals.

``signal.alarm`` (math-verify's own timeout) works only in the main thread, and reward functions run in worker
threads (see ``rewards.guarded_reward``).  Here a daemon watchdog thread raises ``DeadlineExceeded`` inside a
thread whose deadline has passed, through CPython's ``PyThreadState_SetAsyncExc``.  The exception arrives at the
thread's next bytecode, so Python loops (sympy) stop promptly; a call blocked in C code stops only when it returns.
``DeadlineExceeded`` derives from ``BaseException`` so that libraries catching ``Exception`` (math-verify does)
let it through.

An asynchronous exception can land anywhere, also between a lock's acquire and the ``try`` that releases it, so
the limited thread never takes a lock here: it hands its deadline to the watchdog through a ``deque`` (a C
call) and settles "finished or fired" with one atomic ``dict.setdefault``.  Use it only around code whose call
graph is known not to hold locks across Python code (math-verify and sympy); never to stop arbitrary user code.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import heapq
import itertools
import threading
import time
from collections.abc import Iterator

_SET_ASYNC_EXC = ctypes.pythonapi.PyThreadState_SetAsyncExc
_SET_ASYNC_EXC.restype = ctypes.c_int
_STATE, _SENT = "state", "sent"


class DeadlineExceeded(BaseException):
    """Raised inside a thread whose time limit has passed."""


def raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> bool:
    """Schedule ``exc_type`` in the thread ``thread_id`` (``None`` cancels a pending one); True if it exists."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None  # None is passed as NULL
    return _SET_ASYNC_EXC(ctypes.c_ulong(thread_id), exc) == 1


_TICK_S = 0.05  # the watchdog's resolution: deadlines fire up to this late
_requests: collections.deque = collections.deque()  # append and popleft are atomic: no lock, no wake-up per call
_watchdog: list[threading.Thread] = []


def _watch() -> None:
    """Every tick, take new deadlines from ``_requests`` and fire each passed one whose block has not finished."""
    pending: list[tuple[float, int, dict]] = []
    order = itertools.count()
    while True:
        time.sleep(_TICK_S)
        while _requests:
            entry = _requests.popleft()
            if _STATE not in entry:  # blocks that already finished need no watching
                heapq.heappush(pending, (entry["due"], next(order), entry))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, entry = heapq.heappop(pending)
            if entry.setdefault(_STATE, "fired") == "fired":
                raise_in_thread(entry["thread"], DeadlineExceeded)
                entry[_SENT] = True


def _ensure_watchdog() -> None:
    if not _watchdog:  # two threads racing here start two watchdogs, which share the queue: harmless
        thread = threading.Thread(target=_watch, name="deadline-watchdog", daemon=True)
        _watchdog.append(thread)
        thread.start()


def _finish(entry: dict) -> None:
    """Close a limited block: if its deadline fired, wait until the exception is sent, then cancel it if pending."""
    if entry.setdefault(_STATE, "finished") == "finished":
        return
    while _SENT not in entry:  # the watchdog has claimed the entry and is about to send
        time.sleep(0.0005)
    raise_in_thread(entry["thread"], None)


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise ``DeadlineExceeded`` in the calling thread if the block runs longer than ``seconds`` (None: no limit).

    The exception may surface while the block is being left; callers catch ``DeadlineExceeded`` around the
    ``with`` statement.  Blocks do not nest.
    """
    if seconds is None:
        yield
        return
    entry = {"thread": threading.get_ident(), "due": time.monotonic() + seconds}
    _ensure_watchdog()
    _requests.append(entry)
    try:
        yield
    finally:
        _finish(entry)
