// SpawnProcess: starts a child process for a test (a server, a client, redis-server) with
// posix_spawn, which is safe from a threaded test process where fork() is not.
//
// The child reads /dev/null, writes its stdout to `out_path` and its stderr to `err_path` (the
// same file when the paths are equal), and starts with a clean signal mask, whatever the
// spawning thread has blocked. argv[0] is looked up in PATH unless it contains a '/'.
//
// Thread-safety: thread-safe.
#ifndef FLIGHTCACHE_TESTS_TESTING_SPAWN_H_
#define FLIGHTCACHE_TESTS_TESTING_SPAWN_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

namespace flightcache::testing {

// The child's pid, or -1 with the error (a positive errno value) in `*error`.
// `append`: the output files are appended to instead of truncated.
inline pid_t SpawnProcess(std::vector<std::string> argv, const std::string& out_path,
                          const std::string& err_path, bool append, int* error) {
  const int mode = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), mode, 0644);
  if (err_path == out_path) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), mode, 0644);
  }
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  *error = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return *error == 0 ? pid : -1;
}

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_SPAWN_H_
