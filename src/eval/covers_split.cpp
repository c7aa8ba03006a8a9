#include "mart/eval/covers_split.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <set>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/core/text.h"

namespace mart::eval {

std::optional<CoversSplitFractions> parse_covers_split(const std::string& text) {
  const std::string trimmed = trim(text);
  if (trimmed.empty()) return std::nullopt;
  const auto bad = [&](const std::string& why) {
    MART_CONFIG_ERROR("eval.covers_split '", text, "': ", why, "; give three fractions of the works for train, valid "
                      "and test that sum to 1, e.g. 0.8/0.1/0.1");
  };
  std::vector<double> parsed;
  for (const auto& part : split_list(trimmed, '/')) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(trim(part), &used);
    } catch (const std::exception&) {
      bad("'" + part + "' is not a number");
    }
    if (used != trim(part).size()) bad("'" + part + "' is not a number");
    if (!(value >= 0)) bad("a fraction is negative");
    parsed.push_back(value);
  }
  if (parsed.size() != 3) bad("expected 3 fractions, got " + std::to_string(parsed.size()));
  if (std::abs(parsed[0] + parsed[1] + parsed[2] - 1.0) > 1e-6)
    bad("the fractions sum to " + std::to_string(parsed[0] + parsed[1] + parsed[2]));
  if (parsed[2] <= 0) bad("the test fraction must be above 0");
  return CoversSplitFractions{parsed[0], parsed[1], parsed[2]};
}

CoversSplit covers_split(const std::vector<int64_t>& groups, const std::vector<std::string>& splits,
                         const std::optional<CoversSplitFractions>& fractions, uint64_t seed) {
  MART_CHECK(groups.size() == splits.size(), "covers_split: ", groups.size(), " groups, ", splits.size(), " splits");
  CoversSplit out;
  out.split = splits;
  std::set<std::string> values;
  std::map<int64_t, std::string> work_split;  // work -> the split of its first track
  for (size_t track = 0; track < groups.size(); ++track)
    if (groups[track] >= 0) {
      // The ranking takes "test" literally: a list saying "dev" or "Test" must not rank nothing.
      if (splits[track] != "train" && splits[track] != "valid" && splits[track] != "test")
        MART_CONFIG_ERROR("covers: a version of work ", groups[track], " has split '", splits[track],
                          "': the split column takes train, valid or test (or leave it out: every track is "
                          "then test)");
      values.insert(splits[track]);
      work_split.emplace(groups[track], splits[track]);
    }
  const auto side = [](const std::string& s) { return s == "train" ? 0 : s == "valid" ? 1 : 2; };
  if (values.size() > 1) {  // the data's own split: check it never cuts a work
    for (size_t track = 0; track < groups.size(); ++track)
      if (groups[track] >= 0 && splits[track] != work_split[groups[track]])
        MART_CONFIG_ERROR("covers: work ", groups[track], " has versions in both the '", work_split[groups[track]],
                          "' and the '", splits[track], "' split: a work's versions must all be on one side "
                          "(give them one split in the list file's split column)");
    out.source = CoversSplitSource::data;
    for (const auto& [work, s] : work_split) ++out.works[side(s)];
    return out;
  }
  std::vector<int64_t> works;
  for (const auto& [work, s] : work_split) works.push_back(work);
  const auto work_count = static_cast<int64_t>(works.size());
  std::map<int64_t, std::string> assigned;
  if (fractions && work_count > 0) {
    Rng rng(seed_of(seed, 0x636f76657273ull /*"covers"*/));
    rng.shuffle(works);
    int64_t n_train = std::llround(fractions->train * static_cast<double>(work_count));
    int64_t n_valid = std::llround(fractions->valid * static_cast<double>(work_count));
    n_train = std::min(n_train, work_count - 1);  // at least one test work
    n_valid = std::min(n_valid, work_count - 1 - n_train);
    for (int64_t k = 0; k < work_count; ++k)
      assigned[works[static_cast<size_t>(k)]] = k < n_train ? "train" : k < n_train + n_valid ? "valid" : "test";
    out.source = CoversSplitSource::seeded;
  }
  for (size_t track = 0; track < groups.size(); ++track) {
    if (groups[track] < 0) continue;  // a distractor keeps the data's split
    out.split[track] = out.source == CoversSplitSource::seeded ? assigned[groups[track]] : "test";
  }
  for (const auto& [work, s] : work_split)
    ++out.works[out.source == CoversSplitSource::seeded ? side(assigned[work]) : 2];
  return out;
}

std::string develop_split(const std::string& split) {
  return split == "valid" ? "test" : split == "test" ? "held_out" : split;
}

CoversSplit develop_covers_split(const CoversSplit& given, const std::vector<int64_t>& groups, uint64_t seed) {
  MART_CHECK(groups.size() == given.split.size(), "develop_covers_split: ", groups.size(), " groups, ",
             given.split.size(), " splits");
  if (given.source == CoversSplitSource::none)
    MART_CONFIG_ERROR("eval.score_split valid scores the valid works, but the covers data has no split by work: give "
                      "the list a split column or set eval.covers_split (e.g. 0.8/0.1/0.1)");
  if (given.works[1] < 1)
    MART_CONFIG_ERROR("eval.score_split valid scores the valid works, but the covers split has none (", given.works[0],
                      " train / 0 valid / ", given.works[2], " test works): ",
                      given.source == CoversSplitSource::data
                          ? "give some works the split 'valid' in the list's split column"
                          : "give eval.covers_split a valid fraction (e.g. 0.8/0.1/0.1)");
  // The stand-in valid works: works with at least two training versions (a work of one version
  // queries nothing), at least two of them (one work alone always scores MAP 1), a tenth of the
  // training works when that is more, and at least one training work left.
  std::map<int64_t, int> versions;
  for (size_t track = 0; track < groups.size(); ++track)
    if (groups[track] >= 0 && given.split[track] == "train") ++versions[groups[track]];
  std::vector<int64_t> candidates;
  for (const auto& [work, n] : versions)
    if (n >= 2) candidates.push_back(work);
  const auto n_valid = std::max<size_t>(2, static_cast<size_t>(std::llround(static_cast<double>(versions.size()) / 10.0)));
  if (candidates.size() < 2 || versions.size() < 3)
    MART_CONFIG_ERROR("eval.score_split valid validates on a tenth of the training works (at least 2 with two or more "
                      "versions, and one left to train), but the covers split has ", versions.size(), " training works, ",
                      candidates.size(), " of them with two or more versions");
  Rng rng(seed_of(seed, 0x646576656c6f70ull /*"develop"*/));
  rng.shuffle(candidates);
  const size_t take = std::min({n_valid, candidates.size(), versions.size() - 1});
  const std::set<int64_t> stand_in(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(take));
  CoversSplit out = given;
  for (size_t track = 0; track < groups.size(); ++track) {
    std::string& label = out.split[track];
    label = label == "train" && groups[track] >= 0 && stand_in.count(groups[track]) ? "valid" : develop_split(label);
  }
  out.works[0] = given.works[0] - static_cast<int64_t>(take);
  out.works[1] = static_cast<int64_t>(take);
  out.works[2] = given.works[1];
  return out;
}

}  // namespace mart::eval
