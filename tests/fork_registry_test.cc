// Copyright syncpool authors. SPDX-License-Identifier: Apache-2.0
//
// The fork registry alone (src/fork.h): layers joined out of rank order are locked by rank
// before a fork, in the order they joined within a rank, and unlocked in exactly the reverse
// order in the parent and in the child; only the child's unlocks are told so, and the child's
// fork generation is one more than the parent's.

#include "src/fork.h"

#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace syncpool {
namespace internal {
namespace {

// What the test layers did, in order: "L<id>" for a lock, "U<id>" or "C<id>" for an unlock in
// the parent or in the child. Only the forking thread writes it, and only inside fork().
std::vector<std::string>& Events() {
  static std::vector<std::string>* const events = new std::vector<std::string>();
  return *events;
}

template <int kId>
void Lock() {
  Events().push_back("L" + std::to_string(kId));
}
template <int kId>
void Unlock(bool child) {
  Events().push_back((child ? "C" : "U") + std::to_string(kId));
}

// Joined in this order (static initialization runs them top to bottom): ids name the order
// they must be locked in.
ForkLayer layer_5(ForkRank::kSweepers, &Lock<5>, &Unlock<5>);
ForkLayer layer_2(ForkRank::kThreadSlots, &Lock<2>, &Unlock<2>);
ForkLayer layer_0(ForkRank::kSweeps, &Lock<0>, &Unlock<0>);
ForkLayer layer_4(ForkRank::kRegistrations, &Lock<4>, &Unlock<4>);
ForkLayer layer_6(ForkRank::kSweepers, &Lock<6>, &Unlock<6>);
ForkLayer layer_3(ForkRank::kStatsReport, &Lock<3>, &Unlock<3>);
ForkLayer layer_1(ForkRank::kSweeps, &Lock<1>, &Unlock<1>);

std::vector<std::string> Expected(char unlock) {
  std::vector<std::string> expected;
  for (int id = 0; id <= 6; ++id) expected.push_back("L" + std::to_string(id));
  for (int id = 6; id >= 0; --id) expected.push_back(unlock + std::to_string(id));
  return expected;
}

TEST(ForkRegistryTest, LocksByRankInJoinOrderAndUnlocksInReverse) {
  InstallForkHandlers();
  InstallForkHandlers();  // A second call installs nothing more: each layer runs once below.
  Events().clear();
  const uint64_t generation = g_fork_generation.load();
  const pid_t pid = fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    // The child: report by exit status (gtest's assertions do not reach the parent).
    const bool order = Events() == Expected('C');
    const bool advanced = g_fork_generation.load() == generation + 1;
    _exit((order ? 0 : 1) | (advanced ? 0 : 2));
  }
  EXPECT_EQ(Events(), Expected('U'));
  EXPECT_EQ(g_fork_generation.load(), generation);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status) & 1, 0) << "the child's events were out of order";
  EXPECT_EQ(WEXITSTATUS(status) & 2, 0) << "the child's fork generation did not advance";
}

}  // namespace
}  // namespace internal
}  // namespace syncpool
