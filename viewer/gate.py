"""Admission to the model: one expensive request at a time, a bounded number waiting, no Flask.

    gate = ModelGate(max_waiting=8)
    with gate.slot():             # waits its turn; Busy(ahead) at once when max_waiting already wait
        ...                       # a forward pass, an ablation, a generation

Every request that runs the model (or does work of a forward pass's size) goes through `slot()`;
cheap answers (the page, /api/model, value, lens, sample, the heatmaps) never do, so they never
wait behind expensive ones. A request beyond the bound is refused at once (the viewer answers 503
with Retry-After) instead of queueing: the memory of the viewer does not grow with its clients.

`client_gone(environ)` tells whether the client of a WSGI request has closed its connection (the
viewer drops such a request when it gets its slot, and generation stops at its next token), and
`give_back_memory()` returns the allocator's free memory to the system (glibc `malloc_trim`).
"""

import ctypes
import ctypes.util
import select
import socket
import threading
from contextlib import contextmanager


class Busy(Exception):
    """The model has `ahead` requests running or waiting, the most it takes: try again later."""

    def __init__(self, ahead):
        super().__init__(f"busy: {ahead} request{'' if ahead == 1 else 's'} ahead")
        self.ahead = ahead


class ClientGone(Exception):
    """The client of this request closed its connection: nothing more to compute for it."""


class ModelGate:
    """One request at a time in `slot()`, first come first served; at most `max_waiting` waiting
    for it (0: none wait).
    A waiting request whose client left (its `gone()` says so) leaves the queue: checked every
    `poll` seconds while it waits, for every waiting request when the queue is full, and once more
    when it gets the model."""

    def __init__(self, max_waiting, poll=0.5):
        self.max_waiting, self.poll = int(max_waiting), poll
        self._cond = threading.Condition()
        self._waiting = []            # Waiter per waiting request, in arrival order
        self._running = False

    def load(self):
        """(running, waiting): 1 or 0 running, how many wait."""
        with self._cond:
            return int(self._running), len(self._waiting)

    @contextmanager
    def slot(self, gone=None):
        """Wait for the model, in order of arrival, or raise Busy at once when `max_waiting`
        requests already wait. gone: a function telling whether this request's client has left
        -> ClientGone, no work."""
        waiter = Waiter(gone)
        with self._cond:
            if self._running and len(self._waiting) >= self.max_waiting:
                self._drop_gone()
                if len(self._waiting) >= self.max_waiting:
                    raise Busy(int(self._running) + len(self._waiting))
            if self._running:
                self._waiting.append(waiter)
                while not (waiter.granted or waiter.dropped):
                    self._cond.wait(self.poll)
                    if not waiter.granted and waiter.left():
                        waiter.dropped = True
                        self._waiting.remove(waiter)
                if waiter.dropped:
                    raise ClientGone()
            self._running = True
            if waiter.left():                          # it left while waiting: pass the model on
                self._pass_on()
                raise ClientGone()
        try:
            yield
        finally:
            with self._cond:
                self._pass_on()

    def _pass_on(self):
        """Under the lock: the model goes to the first waiting request, if any."""
        self._running = bool(self._waiting)
        if self._waiting:
            self._waiting.pop(0).granted = True
        self._cond.notify_all()

    def _drop_gone(self):
        """Under the lock: take the waiting requests whose client left out of the queue."""
        for waiter in [w for w in self._waiting if w.left()]:
            waiter.dropped = True                      # its thread wakes and raises ClientGone
            self._waiting.remove(waiter)
        self._cond.notify_all()


class Waiter:
    """A request waiting for the model: `gone()` (or None) tells whether its client left."""

    def __init__(self, gone):
        self.gone, self.dropped, self.granted = gone, False, False

    def left(self):
        return bool(self.gone and self.gone())


def client_gone(environ):
    """True when the client of this request has closed its connection (werkzeug's server puts the
    socket in environ["werkzeug.socket"]; without one, e.g. Flask's test client: False)."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False                          # nothing to read: still there, waiting
        return sock.recv(1, socket.MSG_PEEK) == b""   # readable and empty: the peer closed
    except (OSError, ValueError):                 # reset, or already closed on our side
        return True


def _glibc(name, argtypes):
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


MALLOC_TRIM = _glibc("malloc_trim", [ctypes.c_size_t])
MALLOPT = _glibc("mallopt", [ctypes.c_int, ctypes.c_int])
M_MMAP_THRESHOLD = -3                   # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20                # blocks of 1 MB and more: their own mapping, unmapped when freed


def map_large_blocks():
    """Give every block of 1 MB or more (NumPy's arrays of a forward pass) its own mapping, returned
    to the system when freed (glibc's mallopt(M_MMAP_THRESHOLD); elsewhere nothing). By default
    glibc raises this threshold up to 32 MB after frees, so a pass's [T, d] and [T, 4d] arrays end
    up in per-thread heaps that the process keeps: under load, one pass's worth per thread.
    -> True if set."""
    return bool(MALLOPT and MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


def give_back_memory():
    """Return the allocator's free memory to the system (glibc's malloc_trim(0); elsewhere nothing).
    NumPy's large arrays are freed into the C heap, which glibc keeps after a burst of them.
    -> True if trimmed."""
    return bool(MALLOC_TRIM and MALLOC_TRIM(0) is not None)
