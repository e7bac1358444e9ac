# shellcheck shell=bash
# Shell helpers shared by the project's scripts (scripts/, bench/e2e/, deploy/). Sourced, not run:
#   source "$(dirname "$0")/../scripts/lib.sh"     (path relative to the sourcing script)
#
#   free_port            a free TCP port on 127.0.0.1, asked of the kernel (python3).
#   bounded SECONDS CMD  run CMD under `timeout`: SIGTERM after SECONDS, SIGKILL 5 s later.

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

bounded() {
  local seconds="$1"
  shift
  timeout --signal=TERM --kill-after=5 "$seconds" "$@"
}
