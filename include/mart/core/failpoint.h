#pragma once
// Failpoints: named places where a test can stop a process at a known moment, instead of racing
// a kill against the clock. Inert unless the environment names one:
//
//   MART_FAILPOINT=<name>@<n>   the n-th time this process passes <name>, it stops itself with
//                               SIGSTOP (the test then SIGKILLs it, or SIGCONTs it).
//
// Places: "preprocess.unit_done" (a unit's shard and record are on disk).
#include <string>

namespace mart {

// Stops this process (SIGSTOP) if MART_FAILPOINT names `name` and this is its n-th pass; else nothing.
void failpoint(const std::string& name);

}  // namespace mart
