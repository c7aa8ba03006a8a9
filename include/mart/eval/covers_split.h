#pragma once
// Cover-song splits by work (issue 12): a work's versions are never on two sides. No torch.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mart::eval {

// Fractions of the works for train / valid / test (eval.covers_split, e.g. "0.8/0.1/0.1").
struct CoversSplitFractions {
  double train = 0, valid = 0, test = 0;
};

// "" -> none; else three non-negative numbers separated by '/', summing to 1, test > 0.
// Anything else is a ConfigError that shows the expected form.
std::optional<CoversSplitFractions> parse_covers_split(const std::string& text);

enum class CoversSplitSource { none, data, seeded };

struct CoversSplit {
  std::vector<std::string> split;  // per track: train / valid / test
  CoversSplitSource source = CoversSplitSource::none;
  int64_t works[3] = {0, 0, 0};    // works in train, valid, test
};

// The covers task's split of every track. groups[i] is track i's work (-1: none), splits[i] the
// split the data gave it.
// - The data's split, when the tracks with a work carry more than one split value (a covers list
//   with a split column, mart-synth's split by composition). A work with versions in two
//   splits is a ConfigError that names it.
// - Else, with `fractions`: the works in a seeded order, the first round(train x works) to train,
//   the next round(valid x works) to valid, the rest (at least one) to test.
// - Else none: every track "test" (the frozen protocol then ranks all works, as before splits).
// Tracks without a work are distractors: "test" unless the data's split says otherwise.
CoversSplit covers_split(const std::vector<int64_t>& groups, const std::vector<std::string>& splits,
                         const std::optional<CoversSplitFractions>& fractions, uint64_t seed);

// Development scoring (eval.score_split valid) of one split value: valid -> "test" (scored),
// test -> "held_out" (never read), anything else unchanged. Probes and covers both map with it.
std::string develop_split(const std::string& split);

// Development scoring (eval.score_split valid) of a split by work: the valid works become the
// scored ("test") side, the test works "held_out" (never trained on, validated on or ranked, not
// even as distractors), and a seeded draw of the training works stands in for the valid side:
// round(n / 10) of the n training works but at least 2, drawn among the works with two or more
// training versions (a one-version work queries nothing; one work alone scores MAP 1), leaving at
// least one to train. Needs a split (source != none), a valid work, 3 training works and 2 of them
// with two versions; throws ConfigError naming the fix otherwise. Tracks without a work follow
// their split the same way (a valid distractor is scored, a test one held out; with a seeded split
// every distractor is "test", so a development ranking has none).
CoversSplit develop_covers_split(const CoversSplit& given, const std::vector<int64_t>& groups, uint64_t seed);

}  // namespace mart::eval
