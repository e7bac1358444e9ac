"""Child processes for the e2e script tests: start, wait for a log line or file, run to
completion, stop by PID. Every wait is bounded, and a timeout is a failed check
(check_report), never a hang.

  procs = Processes(workdir)
  proc, log = procs.start("server", [server, "--listen=127.0.0.1:0"])
  m = wait_for("the server logs its port", proc, log, lambda text: re.search(r"port (\d+)", text))
  ...
  procs.stop_all()
"""

import os
import signal
import socket
import subprocess
import time

from check_report import check, fail

START_WAIT = 30  # seconds: a process is listening, or the test fails
STOP_WAIT = 20  # seconds: a process has exited after SIGTERM, or it is killed and the test fails


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def free_port():
    """A port nothing listens on (asked of the kernel, as scripts/lib.sh's free_port does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Child processes, each stopped by its PID: SIGTERM, a bounded wait, then SIGKILL."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.children = []  # (name, Popen, log path)

    def start(self, name, argv):
        log = os.path.join(self.workdir, f"{name}.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCACHE_")}
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        self.children.append((name, proc, log))
        return proc, log

    def stop(self, proc):
        """SIGTERM, then up to STOP_WAIT s; the exit status (None if it had to be killed)."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_WAIT)
            return None

    def stop_all(self):
        for name, proc, _ in reversed(self.children):
            if proc.poll() is None:
                rc = self.stop(proc)
                check(rc is not None, f"{name} (pid {proc.pid}) exited within {STOP_WAIT} s of SIGTERM")


def wait_for(what, proc, log, found):
    """Polls `found(text of log)` until it returns a value; None (and a failure) when the
    process exits or START_WAIT seconds pass."""
    deadline = time.monotonic() + START_WAIT
    while True:
        text = _read(log) if os.path.exists(log) else ""
        value = found(text)
        if value is not None:
            return value
        if proc.poll() is not None:
            fail(f"{what}: the process exited ({proc.returncode}) first; its log:\n{text}")
            return None
        if time.monotonic() > deadline:
            fail(f"{what}: not within {START_WAIT} s; the log so far:\n{text}")
            return None
        time.sleep(0.02)


def run(argv, what, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCACHE_")}
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail(f"{what}: no answer within {timeout} s ({' '.join(argv)})")
        return None
    check(r.returncode == 0, f"{what} (exit {r.returncode})"
          + ("" if r.returncode == 0 else f": {r.stderr.strip()[-2000:]}"))
    return r
