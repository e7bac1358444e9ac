// RedisProcess: a real redis-server (Debian's, from PATH) for the fleet tier's tests, started on
// a free loopback port without persistence (--save '' --appendonly no), its log in the test's
// temp dir. Stopped by PID: Kill() (SIGKILL, as a crash), Pause()/Resume() (SIGSTOP/SIGCONT, a
// Redis that accepts connections but answers nothing), Start() again on the same port (a
// restart). Killed and reaped on destruction, so a failing test leaves nothing behind.
//
// Every wait is bounded (kTestWait); failures are reported through gtest with the log's tail.
//
// Thread-safety: one test thread uses an object.
//
// Usage:
//   RedisProcess redis;
//   ASSERT_TRUE(redis.Start()) << redis.Log();
//   ... options.endpoint = {.host = "127.0.0.1", .port = redis.port()};
//   redis.Kill();  ASSERT_TRUE(redis.Start());  // same port
#ifndef FLIGHTCACHE_TESTS_TESTING_REDIS_PROCESS_H_
#define FLIGHTCACHE_TESTS_TESTING_REDIS_PROCESS_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/latch.h"
#include "tests/testing/spawn.h"

namespace flightcache::testing {

class RedisProcess final {
 public:
  // `password`: started with --requirepass when not empty.
  explicit RedisProcess(std::string password = "") : password_(std::move(password)) {
    static int counter = 0;
    stem_ = absl::StrCat(::testing::TempDir(), "redis_", getpid(), "_", counter++);
  }
  ~RedisProcess() { Kill(); }
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  // Starts redis-server (on a fresh free port the first time, on the same port afterwards) and
  // waits until it answers. False, with a gtest failure, if it did not within `timeout`.
  [[nodiscard]] bool Start(absl::Duration timeout = kTestWait) {
    EXPECT_LT(pid_, 0) << "redis-server is already running";
    // Another process may take the free port between our probe and Redis' bind: try a few.
    const bool fixed_port = port_ != 0;
    for (int attempt = 0; attempt < (fixed_port ? 1 : 5); ++attempt) {
      if (!fixed_port) port_ = FreePort();
      if (Spawn() && WaitUntilAnswering(timeout)) return true;
      Kill();
    }
    ADD_FAILURE() << "redis-server did not start on port " << port_ << "; log:\n" << Log();
    return false;
  }

  // SIGKILL and reap. No-op if not running.
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  void Pause() { Signal(SIGSTOP); }
  void Resume() { Signal(SIGCONT); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const {
    std::ifstream in(stem_ + ".log");
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }

 private:
  static int FreePort() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    int port = 0;
    if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    if (fd >= 0) close(fd);
    EXPECT_NE(port, 0) << "no free port: " << std::strerror(errno);
    return port;
  }

  void Signal(int signal) {
    ASSERT_GT(pid_, 0) << "redis-server is not running";
    ASSERT_EQ(kill(pid_, signal), 0) << std::strerror(errno);
  }

  bool Spawn() {
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     absl::StrCat(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--dir",
                                     ::testing::TempDir(),
                                     "--daemonize",
                                     "no"};
    if (!password_.empty()) {
      args.push_back("--requirepass");
      args.push_back(password_);
    }
    const std::string log = stem_ + ".log";
    int error = 0;
    pid_ = SpawnProcess(std::move(args), log, log, /*append=*/true, &error);
    if (error != 0) {
      ADD_FAILURE() << "posix_spawnp(redis-server): " << std::strerror(error)
                    << " (scripts/install-deps.sh installs it)";
      pid_ = -1;
      return false;
    }
    return true;
  }

  // Until Redis answers PING ("+PONG", or "-NOAUTH" with a password) or its process exits.
  bool WaitUntilAnswering(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // exited (port taken?)
        return false;
      }
      if (Answers()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  bool Answers() const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    timeval tv{.tv_sec = 1, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    char reply[16] = {};
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                    write(fd, "PING\r\n", 6) == 6 && read(fd, reply, sizeof(reply) - 1) > 0 &&
                    (reply[0] == '+' || reply[0] == '-');
    close(fd);
    return ok;
  }

  const std::string password_;
  std::string stem_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace flightcache::testing

#endif  // FLIGHTCACHE_TESTS_TESTING_REDIS_PROCESS_H_
