"""llama_audit.signals at the points a subprocess test cannot aim at: a stop signal that lands
inside a ``__del__`` (pyarrow's writers close there), where Python would print "Exception
ignored" and drop it. Each case runs in a fresh interpreter (signal handlers are process-wide)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import llama_audit

PACKAGE_ROOT = str(Path(llama_audit.__file__).resolve().parent.parent)
SIGNAL_IN_DEL = """
import os, signal, time
class Finalized:
    def __del__(self):  # the handler runs here, where an exception cannot propagate
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def run_python(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": PACKAGE_ROOT})


def test_main_process_interruption_lost_in_a_finalizer_is_delivered_again():
    res = run_python(SIGNAL_IN_DEL + """
from llama_audit import signals
signals.stop_on_signals()
try:
    Finalized()
    time.sleep(2)
    print("went on")
except signals.Interrupted as exc:
    print("interrupted", exc.signum, signals.received_signal())
""")
    assert res.stdout.strip() == "interrupted 15 15", res.stdout + res.stderr
    assert "Exception ignored" not in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_worker_stop_lost_in_a_finalizer_still_ends_the_worker_quietly():
    res = run_python(SIGNAL_IN_DEL + """
from llama_audit import signals
signals.worker_lifecycle(os.getppid())
with signals.stoppable_shard():
    Finalized()
    time.sleep(2)
print("went on")
""")
    assert res.returncode == 143 and "went on" not in res.stdout, res.stdout + res.stderr
    assert res.stderr == "", res.stderr


def test_worker_exits_at_once_when_its_parent_is_already_gone():
    res = run_python("import os\nfrom llama_audit import signals\n"
                     "signals.worker_lifecycle(os.getppid() + 100000)\nprint('went on')\n")
    assert res.returncode == 143 and res.stdout == "" and res.stderr == ""


def test_ctrl_c_while_the_pool_holds_a_future_lock_does_not_hang(tmp_path):
    """The race behind a CI hang: Ctrl-C landed inside ``concurrent.futures.wait`` while it held
    futures' locks; the ``Interrupted`` left them held, the pool's manager thread then blocked on
    one for good, and ``shutdown(wait=True)`` never returned. Here ``wait`` is replaced by one that
    takes a future's lock and receives SIGINT before it lets go, every time: the run must end
    interrupted, promptly."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for s in range(4):
        (corpus / f"s{s}.jsonl").write_text('{"id": "a", "text": "She said he was there."}\\n' * 50)
    res = run_python(f"""
import os, signal, concurrent.futures as cf
from llama_audit import signals
from llama_audit.executors import pool
real_wait = cf.wait
def wait(fs, timeout=None, return_when=cf.ALL_COMPLETED):
    first = next(iter(fs))
    first._condition.acquire()  # as wait's _AcquireFutures.__enter__ does, outside any try
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, with the lock held
    for _ in range(1000):
        pass
    first._condition.release()
    return real_wait(fs, timeout=timeout, return_when=return_when)
pool.wait = wait
from llama_audit.job import ScanRequest, run_scan
signals.stop_on_signals()
try:
    run_scan(ScanRequest(paths=[{str(corpus)!r}], out={str(tmp_path / 'out')!r}, analyzers=["pronouns"],
                         languages=("all",), workers=2))
    print("finished")
except KeyboardInterrupt as exc:
    print("interrupted", signals.received_signal())
""")
    assert res.stdout.strip().splitlines()[-1:] == ["interrupted 2"], res.stdout + res.stderr
