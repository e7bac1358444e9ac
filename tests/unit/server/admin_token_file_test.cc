// server/admin_token_file.cc: the admin token follows its file while the server runs.
#include "server/admin_token_file.h"

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flightcache/support/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/latch.h"

namespace flightcache {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRemotePeer[] = "ipv4:10.0.0.7:5000";

class AdminTokenFileTest : public ::testing::Test {
 protected:
  void Write(const std::string& contents) {
    ASSERT_TRUE(support::WriteFileAtomically(path_, contents).ok());
  }
  // Whether `token` is accepted now.
  static bool Accepts(const AdminTokenFile& file, const std::string& token) {
    return file.Check(kRemotePeer, "Bearer " + token).ok();
  }

  const std::string path_ = testing::MakeTempDir() + "/admin-token";
};

TEST_F(AdminTokenFileTest, ARotatedTokenReplacesTheOldOneOnTheNextRead) {
  Write("first-token\n");
  absl::StatusOr<std::unique_ptr<AdminTokenFile>> file =
      AdminTokenFile::Open(path_, {.poll_interval = absl::InfiniteDuration()});
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(Accepts(**file, "first-token"));
  EXPECT_FALSE(Accepts(**file, "second-token"));
  EXPECT_FALSE((*file)->Reload()) << "the file did not change";

  Write("second-token\n");
  EXPECT_TRUE((*file)->Reload());
  EXPECT_TRUE(Accepts(**file, "second-token"));
  EXPECT_FALSE(Accepts(**file, "first-token"));
  EXPECT_EQ((*file)->reloads(), 1);
  // Even from loopback the token is needed: the file's guard, not the local-peers one.
  EXPECT_EQ((*file)->Check("ipv4:127.0.0.1:5000", std::nullopt).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(AdminTokenFileTest, AFileThatTurnsBadKeepsTheLastGoodToken) {
  Write("good-token\n");
  absl::StatusOr<std::unique_ptr<AdminTokenFile>> file =
      AdminTokenFile::Open(path_, {.poll_interval = absl::InfiniteDuration()});
  ASSERT_TRUE(file.ok()) << file.status();
  for (const char* bad : {"", "two\nlines\n"}) {
    Write(bad);
    EXPECT_FALSE((*file)->Reload());
    EXPECT_TRUE(Accepts(**file, "good-token")) << "after the file held '" << bad << "'";
  }
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  EXPECT_FALSE((*file)->Reload());
  EXPECT_TRUE(Accepts(**file, "good-token")) << "after the file was removed";
  Write("next-token");
  EXPECT_TRUE((*file)->Reload());
  EXPECT_TRUE(Accepts(**file, "next-token"));
  EXPECT_EQ((*file)->reloads(), 1);
}

TEST_F(AdminTokenFileTest, OpeningAMissingFileNamesTheFlagAndThePath) {
  absl::StatusOr<std::unique_ptr<AdminTokenFile>> file = AdminTokenFile::Open(path_, {});
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr("--admin-token-file: "));
  EXPECT_THAT(file.status().message(), HasSubstr(path_));
}

TEST_F(AdminTokenFileTest, ThePollThreadBringsANewTokenIntoForce) {
  Write("old-token");
  testing::Latch changed(1);
  absl::StatusOr<std::unique_ptr<AdminTokenFile>> file = AdminTokenFile::Open(
      path_, {.poll_interval = absl::Milliseconds(10), .on_change = [&] { changed.CountDown(); }});
  ASSERT_TRUE(file.ok()) << file.status();
  Write("new-token");
  ASSERT_TRUE(changed.WaitFor()) << "the poll thread never read the new token";
  EXPECT_TRUE(Accepts(**file, "new-token"));
  EXPECT_FALSE(Accepts(**file, "old-token"));
  file->reset();  // joins the poll thread: the test ends, not hangs
}

TEST_F(AdminTokenFileTest, NoTokenAppearsInAnyMessage) {
  Write("s3cret-token-value");
  absl::StatusOr<std::unique_ptr<AdminTokenFile>> file =
      AdminTokenFile::Open(path_, {.poll_interval = absl::InfiniteDuration()});
  ASSERT_TRUE(file.ok()) << file.status();
  const absl::Status denied = (*file)->Check(kRemotePeer, "Bearer wrong");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), Not(HasSubstr("s3cret")));
}

}  // namespace
}  // namespace flightcache
