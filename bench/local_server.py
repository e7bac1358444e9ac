"""flightcache-server as a child process on 127.0.0.1, for the Python benchmarks in bench/.

start() runs the binary on a free port with its stderr in a temporary file and returns once the
start-up line names the port; stop() sends SIGTERM and waits (SIGKILL after 30 s). Python 3
standard library only.
"""

import os
import re
import signal
import subprocess
import tempfile
import time


class LocalServer:
    def __init__(self, binary, flags, preexec_fn=None):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="flightcache_", suffix=".log")
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--metrics-listen="] + list(flags),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            preexec_fn=preexec_fn,
            env={k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCACHE_")})
        self.pid = self.process.pid
        self.port = None

    def log_text(self):
        with open(self.log.name) as f:
            return f.read()

    def wait_for_port(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            match = re.search(r"\(port (\d+)\)", self.log_text())
            if match:
                self.port = int(match.group(1))
                return self.port
            time.sleep(0.05)
        raise SystemExit(f"the server did not start; its log: {self.log_text()[-2000:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def start(binary, flags=(), preexec_fn=None):
    server = LocalServer(binary, flags, preexec_fn)
    try:
        server.wait_for_port()
    except BaseException:
        server.stop()
        raise
    return server
