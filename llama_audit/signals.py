"""How a run stops: signals in the main process, and worker processes that never outlive it.

Why this exists: a scan is stopped by a person (Ctrl-C), by a scheduler (Slurm sends SIGTERM at the
time limit, then SIGKILL after ``KillWait``), by ``timeout`` or ``kill``, or dies outright (SIGKILL,
out of memory). In every case finished shards must be kept and the rerun must resume; no worker
may go on writing into OUT after its parent is gone; and the person reading the terminal sees one
line saying what happened, not a traceback per process.

Main process (:func:`stop_on_signals`, installed by the CLI's ``main``): SIGINT and SIGTERM both
raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so every cleanup written
for Ctrl-C (the pool stops its workers, the job writes the manifest) runs for SIGTERM too. The exit
code is 128 + the signal: 130 for SIGINT, 143 for SIGTERM (the shell's convention for "stopped by
that signal", which Slurm and wrappers understand). A second signal while the first one's cleanup
runs stops the process at once (the OUT stays resumable: done markers are written last).

Worker processes (:func:`worker_lifecycle`, in the pool's initializer): SIGINT is ignored (a
terminal sends Ctrl-C to the whole process group; the parent decides what happens and reports it);
SIGTERM ends the worker quietly, abandoning the current shard (its temporary files are removed, no
done marker is written); and the worker dies with its parent, by ``PR_SET_PDEATHSIG`` on Linux and,
everywhere, a thread that watches the parent and ends the process when the parent is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WORKER_EXIT_CODE = 128 + signal.SIGTERM  # a worker told to stop (or orphaned) exits with this
ORPHAN_GRACE_SECONDS = 2.0  # an orphaned worker may unwind this long before it is ended hard
PARENT_POLL_SECONDS = 0.5  # how often the watch thread checks the parent when it has no sentinel
PR_SET_PDEATHSIG = 1  # linux/prctl.h
REDELIVER_SECONDS = 0.05  # a stop signal lost in a ``__del__`` is delivered again after this


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by ``signum`` (SIGINT or SIGTERM); handled wherever Ctrl-C is."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- main process ------------------------------------------------------------------------------

_received: list[int] = []  # the stop signals this process received, in order
_deferring = [0]  # depth of interrupts_deferred blocks in the main thread
_deferred: list[int] = []  # a stop signal held back by interrupts_deferred, raised when it ends


def _stop_handler(signum: int, frame) -> None:
    _received.append(signum)
    if len(_received) == 1:
        if _deferring[0]:
            _deferred.append(signum)
            return
        raise Interrupted(signum)
    # a second signal while the first one's cleanup runs: stop now (done markers are written last,
    # so the OUT resumes; only the manifest of this run may be missing)
    with contextlib.suppress(Exception):
        os.write(2, f"\n{signal.Signals(signum).name} again: stopping at once; rerun the same command "
                    "to resume\n".encode())
    os._exit(128 + signum)


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM stop this (main) process's run like Ctrl-C. Call from the main thread."""
    _received.clear()
    _deferred.clear()
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_handler)
    sys.unraisablehook = _redeliver_when_unraisable(sys.unraisablehook)


def _redeliver_when_unraisable(previous: Callable) -> Callable:
    """An :class:`Interrupted` raised where Python cannot propagate it (a ``__del__``, a weakref
    callback) would be printed as "Exception ignored" and lost, and the run would go on; it is
    delivered again instead, at the main thread's next safe point."""

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, Interrupted) and _received:
            import _thread

            # a moment later, from another thread: now, the handler would run inside this hook and be
            # lost again (should the main thread be in another ``__del__`` then, this repeats)
            timer = threading.Timer(REDELIVER_SECONDS, _thread.interrupt_main, args=(_received.pop(),))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    return hook


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold :class:`Interrupted` back in the main thread until the block ends, then raise it.

    For code that takes locks without a ``try`` around them, where an exception would leave a
    lock held: ``concurrent.futures.wait`` acquires every future's lock in a loop, and an
    ``Interrupted`` landing inside that loop left some held for good; the pool's manager thread
    then blocked on one and ``shutdown`` never returned (a Ctrl-C that hung the process). Keep such
    blocks short: the signal waits for them. A second signal still stops the process at once."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    if not _deferring[0] and _deferred:
        raise Interrupted(_deferred.pop())


def received_signal() -> int | None:
    """The first stop signal this process received since :func:`stop_on_signals`, if any."""
    return _received[0] if _received else None


def exit_code_for(code: int) -> int:
    """The process's exit code: ``128 + signal`` (130 SIGINT, 143 SIGTERM) when a stop signal
    ended the run, whatever the command made of it; else ``code`` unchanged."""
    signum = received_signal()
    return code if signum is None else 128 + signum


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (pending, not lost) in this thread for the block.

    Processes started inside the block inherit the blocked mask, so a Ctrl-C that arrives while a
    worker is still importing (before it can install its handlers) waits for it instead of
    printing a ``KeyboardInterrupt`` traceback from the half-started worker."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# -- worker processes --------------------------------------------------------------------------


class WorkerStop(KeyboardInterrupt):
    """Raised in a worker's main thread by SIGTERM while it scans a shard: unwinds the shard (its
    temporary files are removed; no done marker) before the worker exits quietly."""


_in_shard = threading.Event()  # set while a worker's main thread may unwind a shard
_stop_requested = threading.Event()  # SIGTERM arrived: the worker exits as soon as the shard is unwound


def _worker_stop_handler(signum: int, frame) -> None:
    _stop_requested.set()
    if _in_shard.is_set():
        _in_shard.clear()  # one unwind; a second SIGTERM during it exits at once
        raise WorkerStop()
    os._exit(WORKER_EXIT_CODE)  # idle, or setting up: nothing to unwind


def _stop_when_unraisable(previous: Callable) -> Callable:
    """A :class:`WorkerStop` raised where Python cannot propagate it (a ``__del__``, a weakref
    callback: pyarrow's writers close in ``__del__``) would be printed as "Exception ignored" and
    lost; the worker exits quietly there instead."""

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, WorkerStop):
            os._exit(WORKER_EXIT_CODE)
        previous(unraisable)

    return hook


@contextlib.contextmanager
def stoppable_shard() -> Iterator[None]:
    """Around one shard in a worker: SIGTERM unwinds it (:class:`WorkerStop`) and the worker then
    exits quietly, without a traceback and without reporting anything to the parent."""
    _in_shard.set()
    try:
        yield
    except WorkerStop:
        pass
    finally:
        _in_shard.clear()
        if _stop_requested.is_set():
            os._exit(WORKER_EXIT_CODE)


def worker_lifecycle(parent_pid: int) -> None:
    """First thing in a worker process (the pool's initializer): ignore Ctrl-C, stop quietly on
    SIGTERM, and die with the parent ``parent_pid``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # discards a Ctrl-C held back since the spawn
    signal.signal(signal.SIGTERM, _worker_stop_handler)
    sys.unraisablehook = _stop_when_unraisable(sys.unraisablehook)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # see signals_blocked
    die_with_parent(parent_pid)


def die_with_parent(parent_pid: int, on_orphaned: Callable[[], None] | None = None) -> None:
    """End this process when ``parent_pid`` dies, however it dies (SIGKILL included).

    Linux: ``PR_SET_PDEATHSIG`` sends this process SIGTERM when the thread that started it ends
    (the pool starts workers from the thread that runs the scan, which lives as long as the pool).
    Everywhere, and as a backstop when the main thread is stuck in native code: a daemon thread
    waits on the parent (the multiprocessing parent sentinel, else polling ``getppid``), then sends
    SIGTERM to this process and ends it hard after :data:`ORPHAN_GRACE_SECONDS`."""
    _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(WORKER_EXIT_CODE)
    threading.Thread(target=_watch_parent, args=(parent_pid, on_orphaned), name="llama-audit-parent-watch",
                     daemon=True).start()


def _set_pdeathsig(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no prctl: the watch thread still covers it
        return False


def _watch_parent(parent_pid: int, on_orphaned: Callable[[], None] | None) -> None:
    _wait_for_parent_exit(parent_pid)
    if on_orphaned is not None:
        on_orphaned()
        return
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGTERM)  # unwind the shard, as when told to stop
    threading.Event().wait(ORPHAN_GRACE_SECONDS)
    os._exit(WORKER_EXIT_CODE)  # the main thread is stuck (native code): end it regardless


def _wait_for_parent_exit(parent_pid: int) -> None:
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None) if parent is not None and parent.pid == parent_pid else None
    if sentinel is not None:
        try:
            wait([sentinel])  # readable (EOF) once the parent's end of the pipe is closed: it exited
            return
        except (OSError, ValueError):
            pass
    while os.getppid() == parent_pid:
        threading.Event().wait(PARENT_POLL_SECONDS)
