// Cover-song retrieval: MAP, P@10 and MR1 on hand-made rankings, query blocks against the whole,
// a brute-force full sort with ties, Covers80's P@10 bound, and scikit-learn's per-query AP.
#include "mart/metrics/retrieval.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "mart/core/error.h"
#include "sklearn_golden.h"

namespace {

using mart::metrics::QueryResult;
using mart::metrics::RetrievalSummary;

void expect_same(const QueryResult& a, const QueryResult& b) {
  EXPECT_EQ(a.query, b.query);
  EXPECT_EQ(a.n_relevant, b.n_relevant);
  EXPECT_EQ(a.average_precision, b.average_precision);
  EXPECT_EQ(a.precision_at_k, b.precision_at_k);
  EXPECT_EQ(a.first_rank, b.first_rank);
}

TEST(Retrieval, HandMadeRankings) {
  // Relevant at rank 1 only: AP = 1/1, P@10 = 1/10, first correct at rank 1.
  auto r = mart::metrics::score_ranking({1, 0, 0, 0});
  EXPECT_DOUBLE_EQ(r.average_precision, 1.0);
  EXPECT_DOUBLE_EQ(r.precision_at_k, 0.1);
  EXPECT_EQ(r.first_rank, 1u);

  // Relevant at ranks 2 and 5: precisions there 1/2 and 2/5 -> AP = 0.45; P@10 = 2/10.
  r = mart::metrics::score_ranking({0, 1, 0, 0, 1});
  EXPECT_DOUBLE_EQ(r.average_precision, 0.45);
  EXPECT_DOUBLE_EQ(r.precision_at_k, 0.2);
  EXPECT_EQ(r.first_rank, 2u);
  EXPECT_EQ(r.n_relevant, 2u);

  // 12 ranked, relevant at ranks 3 and 11: AP = (1/3 + 2/11) / 2 = 17/66; rank 11 is outside
  // the top 10 -> P@10 = 1/10.
  r = mart::metrics::score_ranking({0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0});
  EXPECT_NEAR(r.average_precision, 17.0 / 66.0, 1e-15);
  EXPECT_DOUBLE_EQ(r.precision_at_k, 0.1);
  EXPECT_EQ(r.first_rank, 3u);

  // P@k divides by k even when fewer items are ranked; k is configurable.
  r = mart::metrics::score_ranking({1, 1}, 5);
  EXPECT_DOUBLE_EQ(r.precision_at_k, 0.4);
  EXPECT_DOUBLE_EQ(r.average_precision, 1.0);

  r = mart::metrics::score_ranking({0, 0, 0});
  EXPECT_EQ(r.n_relevant, 0u);
  EXPECT_EQ(r.first_rank, 0u);

  EXPECT_THROW(mart::metrics::score_relevant_ranks({2, 2}, 5), mart::Error);
  EXPECT_THROW(mart::metrics::score_relevant_ranks({6}, 5), mart::Error);
}

// Six 2-D items, exact similarities (ties on purpose):
//   item: 0 (1,0) g0 | 1 (1,0) g1 | 2 (1,1) g0 | 3 (0,1) g1 | 4 (-1,0) g2 | 5 (2,0) g0
std::vector<float> hand_embeddings() { return {1, 0, 1, 0, 1, 1, 0, 1, -1, 0, 2, 0}; }
std::vector<std::int64_t> hand_groups() { return {0, 1, 0, 1, 2, 0}; }

TEST(Retrieval, HandMadeEmbeddings) {
  // Cosines: 0,1,5 share a direction (1); item 2 is at 1/sqrt2 from 0,1,3,5; 4 is opposite.
  // q0: 1 (1), 5 (1), 2 (.71), 3 (0), 4 (-1); relevant 5, 2 at ranks 2, 3
  //     -> AP (1/2 + 2/3)/2 = 7/12, P@10 0.2, first 2.
  // q1: 0, 5, 2, 3, 4; relevant 3 at rank 4 -> AP 1/4, P@10 0.1, first 4.
  // q2: 0, 1, 3, 5 all tied at 1/sqrt2 (index order), then 4; relevant 0, 5 at ranks 1, 4
  //     -> AP (1 + 2/4)/2 = 3/4, P@10 0.2, first 1.
  // q3: 2 (.71), then 0, 1, 4, 5 tied at 0; relevant 1 at rank 3 -> AP 1/3, P@10 0.1, first 3.
  // q4: group of one -> skipped.
  // q5: 0, 1 (1), 2, 3, 4; relevant 0, 2 at ranks 1, 3 -> AP (1 + 2/3)/2 = 5/6, P@10 0.2, first 1.
  // MAP = (7/12 + 3/12 + 9/12 + 4/12 + 10/12) / 5 = 33/60 = 0.55; P@10 = 0.8/5 = 0.16;
  // MR1 = (2 + 4 + 1 + 3 + 1)/5 = 2.2.
  const auto emb = hand_embeddings();
  const mart::metrics::Embeddings e{emb.data(), 6, 2};
  const auto per = mart::metrics::retrieval_block(e, hand_groups(), 0, 6);
  const double ap[] = {7.0 / 12, 0.25, 0.75, 1.0 / 3, 0, 5.0 / 6};
  const double p10[] = {0.2, 0.1, 0.2, 0.1, 0, 0.2};
  const std::size_t first[] = {2, 4, 1, 3, 0, 1};
  ASSERT_EQ(per.size(), 6u);
  for (std::size_t q = 0; q < 6; ++q) {
    SCOPED_TRACE("query " + std::to_string(q));
    EXPECT_EQ(per[q].query, q);
    EXPECT_NEAR(per[q].average_precision, ap[q], 1e-15);
    EXPECT_NEAR(per[q].precision_at_k, p10[q], 1e-15);
    EXPECT_EQ(per[q].first_rank, first[q]);
  }
  EXPECT_EQ(per[4].n_relevant, 0u);
  const RetrievalSummary s = mart::metrics::retrieval_metrics(emb, 2, hand_groups());
  EXPECT_NEAR(s.map, 0.55, 1e-15);
  EXPECT_NEAR(s.precision_at_k, 0.16, 1e-15);
  EXPECT_NEAR(s.mr1, 2.2, 1e-15);
  EXPECT_EQ(s.n_queries, 5u);
  EXPECT_EQ(s.n_skipped, 1u);
  EXPECT_EQ(s.k, 10u);
}

// The same six items with 1 and 3 ungrouped (-1): they are neither queries nor answers, only
// distractors in the rankings (before, the two shared the id -1 and formed a "work" of their own:
// q1 would have found 3 at rank 4, AP 1/4).
//   q0: 1 (1, distractor), 5 (1), 2 (.71), 3, 4; relevant 5, 2 at ranks 2, 3 -> AP 7/12, first 2.
//   q2: 0, 1, 3, 5 tied, then 4; relevant 0, 5 at ranks 1, 4 -> AP 3/4, first 1.
//   q4: alone in group 2 -> skipped.
//   q5: 0, 1 tied at 1, 2, 3, 4; relevant 0, 2 at ranks 1, 3 -> AP 5/6, first 1.
// MAP = (7/12 + 9/12 + 10/12) / 3 = 13/18; P@10 = 0.6/3 = 0.2; MR1 = (2 + 1 + 1)/3 = 4/3.
TEST(Retrieval, UngroupedItemsAreOnlyDistractors) {
  const auto emb = hand_embeddings();
  const std::vector<std::int64_t> groups = {0, -1, 0, -1, 2, 0};
  const mart::metrics::Embeddings e{emb.data(), 6, 2};
  const auto per = mart::metrics::retrieval_block(e, groups, 0, 6);
  ASSERT_EQ(per.size(), 4u);
  const std::size_t query[] = {0, 2, 4, 5};
  const double ap[] = {7.0 / 12, 0.75, 0, 5.0 / 6};
  const std::size_t first[] = {2, 1, 0, 1};
  for (std::size_t i = 0; i < per.size(); ++i) {
    SCOPED_TRACE("result " + std::to_string(i));
    EXPECT_EQ(per[i].query, query[i]);
    EXPECT_NEAR(per[i].average_precision, ap[i], 1e-15);
    EXPECT_EQ(per[i].first_rank, first[i]);
  }
  // A block holding only ungrouped items gives no result.
  EXPECT_TRUE(mart::metrics::retrieval_block(e, groups, 1, 2).empty());
  const RetrievalSummary s = mart::metrics::retrieval_metrics(emb, 2, groups);
  EXPECT_NEAR(s.map, 13.0 / 18, 1e-15);
  EXPECT_NEAR(s.precision_at_k, 0.2, 1e-15);
  EXPECT_NEAR(s.mr1, 4.0 / 3, 1e-15);
  EXPECT_EQ(s.n_queries, 3u);
  EXPECT_EQ(s.n_skipped, 1u);
  // No grouped item at all: nothing to score.
  EXPECT_THROW(mart::metrics::retrieval_metrics(emb, 2, std::vector<std::int64_t>(6, -1)), mart::Error);
}

// Random embeddings on a coarse grid (duplicated vectors -> tied similarities).
std::vector<float> grid_embeddings(std::mt19937& rng, std::size_t n, std::size_t dim) {
  std::uniform_int_distribution<int> v(-1, 1);
  std::vector<float> e(n * dim);
  for (auto& x : e) x = static_cast<float>(v(rng));
  e[0] = 1;  // keep row 0 nonzero; other all-zero rows are allowed (similarity 0)
  return e;
}

std::vector<std::int64_t> random_groups(std::mt19937& rng, std::size_t n, int n_groups) {
  std::uniform_int_distribution<int> g(0, n_groups - 1);
  std::vector<std::int64_t> out(n);
  for (auto& x : out) x = g(rng);
  return out;
}

TEST(Retrieval, BlocksEqualTheWhole) {
  std::mt19937 rng(7);
  const std::size_t n = 40, dim = 3;
  const auto emb = grid_embeddings(rng, n, dim);
  const auto groups = random_groups(rng, n, 9);
  const mart::metrics::Embeddings e{emb.data(), n, dim};
  const auto whole = mart::metrics::retrieval_block(e, groups, 0, n);
  auto parts = mart::metrics::retrieval_block(e, groups, 0, 3);
  const auto rest = mart::metrics::retrieval_block(e, groups, 3, n);
  parts.insert(parts.end(), rest.begin(), rest.end());
  ASSERT_EQ(parts.size(), whole.size());
  for (std::size_t q = 0; q < n; ++q) expect_same(parts[q], whole[q]);

  // Summaries agree exactly, even with the blocks gathered in another order (ranks reducing).
  std::vector<QueryResult> shuffled = rest;
  const auto head = mart::metrics::retrieval_block(e, groups, 0, 3);
  shuffled.insert(shuffled.end(), head.begin(), head.end());
  const auto a = mart::metrics::summarize_retrieval(whole);
  const auto b = mart::metrics::summarize_retrieval(shuffled);
  EXPECT_EQ(a.map, b.map);
  EXPECT_EQ(a.precision_at_k, b.precision_at_k);
  EXPECT_EQ(a.mr1, b.mr1);
  EXPECT_EQ(a.n_queries + a.n_skipped, n);

  EXPECT_TRUE(mart::metrics::retrieval_block(e, groups, 5, 5).empty());
  EXPECT_THROW(mart::metrics::retrieval_block(e, groups, 3, n + 1), mart::Error);
  EXPECT_THROW(mart::metrics::summarize_retrieval({whole[0], whole[0]}), mart::Error);
}

TEST(Retrieval, EqualsFullSortWithTies) {
  std::mt19937 rng(11);
  const std::size_t n = 60, dim = 2;
  const auto emb = grid_embeddings(rng, n, dim);
  const auto groups = random_groups(rng, n, 12);
  const auto per = mart::metrics::retrieval_metrics(emb, dim, groups);
  const auto block = mart::metrics::retrieval_block({emb.data(), n, dim}, groups, 0, n);
  double map = 0;
  std::size_t scored = 0;
  for (std::size_t q = 0; q < n; ++q) {
    // The slow way: cosine to every other item, full sort (similarity desc, index asc).
    auto cosine = [&](std::size_t i, std::size_t j) {
      double d = 0, ni = 0, nj = 0;
      for (std::size_t k = 0; k < dim; ++k) {
        d += double(emb[i * dim + k]) * emb[j * dim + k];
        ni += double(emb[i * dim + k]) * emb[i * dim + k];
        nj += double(emb[j * dim + k]) * emb[j * dim + k];
      }
      return ni * nj > 0 ? d / (std::sqrt(ni) * std::sqrt(nj)) : 0.0;
    };
    std::vector<std::size_t> others;
    for (std::size_t j = 0; j < n; ++j)
      if (j != q) others.push_back(j);
    std::stable_sort(others.begin(), others.end(),
                     [&](std::size_t a, std::size_t b) { return cosine(q, a) > cosine(q, b); });
    std::vector<std::uint8_t> rel;
    for (std::size_t j : others) rel.push_back(groups[j] == groups[q]);
    const auto want = mart::metrics::score_ranking(rel);
    SCOPED_TRACE("query " + std::to_string(q));
    EXPECT_EQ(block[q].n_relevant, want.n_relevant);
    EXPECT_NEAR(block[q].average_precision, want.average_precision, 1e-12);
    EXPECT_NEAR(block[q].precision_at_k, want.precision_at_k, 1e-12);
    EXPECT_EQ(block[q].first_rank, want.first_rank);
    if (want.n_relevant) {
      map += want.average_precision;
      ++scored;
    }
  }
  EXPECT_NEAR(per.map, map / scored, 1e-12);
}

TEST(Retrieval, Covers80LikePrecisionAt10IsAtMostOneTenth) {
  std::mt19937 rng(80);
  std::normal_distribution<float> g;
  const std::size_t pairs = 80, n = 2 * pairs, dim = 16;
  std::vector<std::int64_t> groups(n);
  for (std::size_t i = 0; i < n; ++i) groups[i] = static_cast<std::int64_t>(i / 2);

  // Random embeddings: any score, but each query has one relevant item among 159.
  std::vector<float> emb(n * dim);
  for (auto& x : emb) x = g(rng);
  const auto per = mart::metrics::retrieval_block({emb.data(), n, dim}, groups, 0, n);
  for (const auto& r : per) {
    EXPECT_EQ(r.n_relevant, 1u);
    EXPECT_LE(r.precision_at_k, 0.1);
    EXPECT_GE(r.first_rank, 1u);
    EXPECT_LE(r.first_rank, n - 1);
    EXPECT_DOUBLE_EQ(r.average_precision, 1.0 / r.first_rank);  // one relevant item
  }
  const auto s = mart::metrics::summarize_retrieval(per);
  EXPECT_LE(s.precision_at_k, 0.1 + 1e-12);  // a mean of 160 values <= 0.1, up to rounding
  EXPECT_EQ(s.n_queries, n);

  // Perfect embeddings (both versions share a vector): MAP 1, MR1 1, P@10 exactly 0.1.
  for (std::size_t i = 1; i < n; i += 2)
    std::copy_n(emb.begin() + (i - 1) * dim, dim, emb.begin() + i * dim);
  const auto perfect = mart::metrics::retrieval_metrics(emb, dim, groups);
  EXPECT_DOUBLE_EQ(perfect.map, 1.0);
  EXPECT_DOUBLE_EQ(perfect.mr1, 1.0);
  EXPECT_NEAR(perfect.precision_at_k, 0.1, 1e-12);  // 160 additions of 0.1 round a little
}

TEST(Retrieval, SkippedQueriesAndBadInput) {
  const std::vector<float> emb = {1, 0, 0, 1, 1, 1};
  EXPECT_THROW(mart::metrics::retrieval_metrics(emb, 2, {0, 1, 2}), mart::Error);  // no pairs
  EXPECT_THROW(mart::metrics::retrieval_metrics(emb, 2, {0, 1}), mart::Error);     // sizes
  const std::vector<float> bad = {1, 0, NAN, 1};
  EXPECT_THROW(mart::metrics::retrieval_metrics(bad, 2, {0, 0}), mart::Error);
  const auto s = mart::metrics::retrieval_metrics(emb, 2, {0, 7, 0});
  EXPECT_EQ(s.n_queries, 2u);
  EXPECT_EQ(s.n_skipped, 1u);
}

// scikit-learn's average_precision_score on each query's similarities (tie-free Gaussian
// embeddings, where sklearn's tie grouping and our index order agree), and numpy P@10 / MR1.
TEST(Retrieval, EqualsScikitLearnAveragePrecision) {
  std::mt19937 rng(100);
  std::normal_distribution<float> g;
  const std::size_t n = 45, dim = 8;
  std::vector<float> emb(n * dim);
  for (auto& x : emb) x = g(rng);
  const auto groups = random_groups(rng, n, 14);

  mart::test::GoldenInput in;
  in.add(mart::test::GoldenKind::kRetrieval, n, dim, emb, groups);
  const std::string in_path = std::string(MART_BINARY_DIR) + "/retrieval_golden_in.bin";
  const std::string out_path = std::string(MART_BINARY_DIR) + "/retrieval_golden_out.bin";
  in.write(in_path);
  const std::string skip = mart::test::run_golden_script(in_path, out_path);
  if (!skip.empty()) GTEST_SKIP() << skip;
  const auto golden = mart::test::read_golden(out_path);
  ASSERT_EQ(golden.size(), 1u);
  const auto& gv = golden[0];
  ASSERT_EQ(gv.size(), 3 * n + 3);

  const auto per = mart::metrics::retrieval_block({emb.data(), n, dim}, groups, 0, n);
  for (std::size_t q = 0; q < n; ++q) {
    SCOPED_TRACE("query " + std::to_string(q));
    if (std::isnan(gv[3 * q])) {
      EXPECT_EQ(per[q].n_relevant, 0u);
      continue;
    }
    EXPECT_NEAR(per[q].average_precision, gv[3 * q], 1e-9);
    EXPECT_NEAR(per[q].precision_at_k, gv[3 * q + 1], 1e-9);
    EXPECT_EQ(static_cast<double>(per[q].first_rank), gv[3 * q + 2]);
  }
  const auto s = mart::metrics::summarize_retrieval(per);
  EXPECT_NEAR(s.map, gv[3 * n], 1e-9);
  EXPECT_NEAR(s.precision_at_k, gv[3 * n + 1], 1e-9);
  EXPECT_NEAR(s.mr1, gv[3 * n + 2], 1e-9);
}

}  // namespace

// The chance row: the exact expectation over every order of a query's others, against the mean
// of score_relevant_ranks over all 6! orders, and a hand value.
TEST(Retrieval, ChanceIsTheMeanOverEveryRanking) {
  const std::vector<std::int64_t> groups = {0, 0, 1, 1, 1, -1, 2};  // 2: a single version, skipped
  for (std::size_t k : {std::size_t{2}, std::size_t{10}}) {
    SCOPED_TRACE("k = " + std::to_string(k));
    double ap = 0, p = 0, r1 = 0;
    std::size_t queries = 0;
    for (std::size_t q = 0; q < groups.size(); ++q) {
      if (groups[q] < 0) continue;
      std::vector<std::size_t> others;
      for (std::size_t j = 0; j < groups.size(); ++j)
        if (j != q) others.push_back(j);
      if (std::none_of(others.begin(), others.end(), [&](std::size_t j) { return groups[j] == groups[q]; })) continue;
      ++queries;
      double sum_ap = 0, sum_p = 0, sum_r1 = 0;
      std::size_t orders = 0;
      std::sort(others.begin(), others.end());
      do {
        std::vector<std::size_t> ranks;
        for (std::size_t r = 0; r < others.size(); ++r)
          if (groups[others[r]] == groups[q]) ranks.push_back(r + 1);
        const auto x = mart::metrics::score_relevant_ranks(ranks, others.size(), k);
        sum_ap += x.average_precision, sum_p += x.precision_at_k, sum_r1 += static_cast<double>(x.first_rank);
        ++orders;
      } while (std::next_permutation(others.begin(), others.end()));
      ap += sum_ap / static_cast<double>(orders), p += sum_p / static_cast<double>(orders);
      r1 += sum_r1 / static_cast<double>(orders);
    }
    const auto c = mart::metrics::chance_retrieval(groups, k);
    EXPECT_EQ(c.n_queries, queries);
    EXPECT_EQ(c.n_skipped, 1u);
    EXPECT_NEAR(c.map, ap / static_cast<double>(queries), 1e-12);
    EXPECT_NEAR(c.precision_at_k, p / static_cast<double>(queries), 1e-12);
    EXPECT_NEAR(c.mr1, r1 / static_cast<double>(queries), 1e-12);
  }
  // Two versions among 3 distractors: E[AP] = H_4 / 4 = 25/48, E[P@10] = 4/40, E[MR1] = 5/2.
  const auto h = mart::metrics::chance_retrieval({0, 0, -1, -1, -1});
  EXPECT_NEAR(h.map, 25.0 / 48.0, 1e-15);
  EXPECT_NEAR(h.precision_at_k, 0.1, 1e-15);
  EXPECT_NEAR(h.mr1, 2.5, 1e-15);
  EXPECT_DOUBLE_EQ(mart::metrics::chance_retrieval({4, 4}).map, 1.0);  // the only other item is the answer
  EXPECT_THROW(mart::metrics::chance_retrieval({0, 1, -1}), mart::Error);
}
