"""Ctrl-C for long jobs: control comes back within seconds, even while XLA compiles or a step runs.

Python runs a signal handler only when the main thread returns to the interpreter, which can be
minutes later while XLA compiles (the GIL is released, but the main thread is in C++) or a slow
step runs on a busy machine. So besides the Python handler, the signal's wake-up byte
(``signal.set_wakeup_fd``, written from C at once) is read by a watchdog thread:

* outside the *loop* (start-up: building, compiling, restoring) there is nothing worth waiting
  for: the watchdog runs the ``on_abandon`` clean-up, prints ``interrupted: <describe()>`` and
  ends the process (exit status 130);
* inside the loop the Python handler sets :attr:`requested`; the loop stops at the next step
  boundary and the job finishes its checkpoint and exits normally. If that has not happened
  within ``grace_s`` seconds (a step or a save taking long), the watchdog abandons as above.
  What is abandoned is never half-sealed: a checkpoint is sealed by renaming its manifest into
  place, and an unfinished Orbax save is a temporary directory that the next run removes;
* a second Ctrl-C abandons at once.

``describe()`` must be cheap (it runs in the watchdog thread): it names the step and the last
checkpoint sealed by this process, without hashing anything.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable


class GracefulInterrupt:
    """See the module docstring. ``install()`` in the main thread, ``uninstall()`` in a finally."""

    def __init__(self, grace_s: float = 10.0):
        self.grace_s = float(grace_s)
        self.requested = False
        self.in_loop = False
        self.describe: Callable[[], str] = lambda: "re-run the same command to resume"
        self.on_abandon: Callable[[], None] | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._over = False
        self._previous = None
        self._old_wakeup = -1
        self._pipe: tuple[int, int] | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are only delivered to the main thread; nothing to do
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._pipe = (r, w)
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="ctrl-c watchdog", daemon=True).start()

    def uninstall(self) -> None:
        with self._lock:
            self._over = True
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
        r, w = self._pipe
        self._pipe = None
        os.close(w)  # the watchdog's read returns b'' and it ends
        if self._count:
            # Interrupted: the caller prints its message now; bound whatever exit still waits on
            # (reader threads, library clean-up) without a second message.
            t = threading.Timer(self.grace_s, os._exit, args=(130,))
            t.daemon = True
            t.start()

    # -- in the main thread ---------------------------------------------------------------
    def _handle(self, signum, frame):  # pylint: disable=unused-argument
        if self.in_loop:
            self.requested = True
        # Outside the loop the watchdog ends the process; raising here could leave the job
        # half way through writing something.

    # -- in the watchdog thread -----------------------------------------------------------
    def _watch(self) -> None:
        r = self._pipe[0]
        try:
            while True:
                data = os.read(r, 64)
                if not data:
                    return
                n = sum(1 for b in data if b == signal.SIGINT)
                if not n:
                    continue
                self._count += n
                if self._count >= 2 or not self.in_loop:
                    self._abandon()
                else:
                    t = threading.Timer(self.grace_s, self._abandon)
                    t.daemon = True
                    t.start()
        finally:
            os.close(r)

    def _abandon(self) -> None:
        with self._lock:
            if self._over:
                return
            self._over = True
        try:
            if self.on_abandon is not None:
                self.on_abandon()
            msg = self.describe()
        except Exception as e:  # pylint: disable=broad-exception-caught
            msg = f"re-run the same command to resume ({type(e).__name__} while describing the state)"
        try:
            sys.stdout.flush()
        except Exception:  # pylint: disable=broad-exception-caught
            pass
        os.write(2, f"interrupted: {msg}\n".encode())
        os._exit(130)
