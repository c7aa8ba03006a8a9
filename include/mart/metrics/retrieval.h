#pragma once
// Cover-song retrieval metrics: every item with a group queries all the others (itself excluded),
// ranked by cosine similarity; an answer is correct when it shares the query's group (work) id.
// Items without a group (a negative id, -1 in the shards) are neither queries nor answers: they
// are ranked as distractors only (like the noise tracks of a covers set with distractors), so they
// can lower a query's precision but never count as a correct answer.
// Per query: average precision over the whole ranking, precision at k (k = 10), and the 1-based
// rank of the first correct answer; over queries: MAP, mean P@k and MR1.
//
// Scale: retrieval_block() scores the queries [q0, q1) against all n items one query at a time,
// holding O(n) extra memory per query and never an n x n matrix, so mart-eval can hand query
// blocks to MPI ranks, gather the per-query results and call summarize_retrieval(). The result
// does not depend on how the queries were split.
//
// Ranking order: similarity descending; equal similarities are broken by item index ascending,
// so results are deterministic. Similarity is computed in double from the float embeddings:
// dot(a, b) / (|a| |b|); an all-zero embedding has similarity 0 with everything.
// Definitions: docs/metrics.md.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mart::metrics {

struct QueryResult {
  std::size_t query = 0;        // item index of the query
  std::size_t n_relevant = 0;   // other items of the same group; 0 = query skipped
  double average_precision = 0.0;  // mean over the relevant items of precision at their rank
  double precision_at_k = 0.0;     // relevant items in the top k, divided by k (always by k)
  std::size_t first_rank = 0;      // 1-based rank of the first relevant item (0 when none)
  std::size_t k = 10;              // the k of precision_at_k
};

struct RetrievalSummary {
  double map = 0.0;        // mean average precision over the scored queries
  double precision_at_k = 0.0;  // mean P@k over the scored queries
  double mr1 = 0.0;        // mean first_rank over the scored queries
  std::size_t k = 10;
  std::size_t n_queries = 0;  // scored queries (they have at least one other version)
  std::size_t n_skipped = 0;  // queries whose group has no other item
};

// Embeddings: row-major [n, dim] floats; groups: one id per item.
struct Embeddings {
  const float* data = nullptr;
  std::size_t n = 0;
  std::size_t dim = 0;
};

// Metrics of one query from the 1-based ranks of its relevant items (any order, distinct) in a
// ranking of n_ranked items. The pure core of every query.
QueryResult score_relevant_ranks(std::vector<std::size_t> ranks, std::size_t n_ranked,
                                 std::size_t k = 10);

// Metrics of one query from a whole ranking given as relevance flags in rank order
// (relevant_by_rank[r] for rank r + 1). Convenience for hand-made rankings.
QueryResult score_ranking(const std::vector<std::uint8_t>& relevant_by_rank, std::size_t k = 10);

// Per-query results of queries q0 .. q1-1 against all items, one per query with a group (items
// without one are skipped: the result may be shorter than q1 - q0). Throws mart::Error on mismatched
// sizes, q0 > q1 or q1 > n, non-finite embeddings.
std::vector<QueryResult> retrieval_block(const Embeddings& emb,
                                         const std::vector<std::int64_t>& groups, std::size_t q0,
                                         std::size_t q1, std::size_t k = 10);

// MAP, mean P@k and MR1 over the results of any split of the queries (order does not matter;
// a query appearing twice throws). Skipped queries (n_relevant == 0) are counted, not averaged.
// Throws mart::Error when no query could be scored, or when results disagree on k.
RetrievalSummary summarize_retrieval(std::vector<QueryResult> results);

// Everything at once: retrieval_block over [0, n) then summarize_retrieval.
RetrievalSummary retrieval_metrics(const Embeddings& emb, const std::vector<std::int64_t>& groups,
                                   std::size_t k = 10);
RetrievalSummary retrieval_metrics(const std::vector<float>& embeddings, std::size_t dim,
                                   const std::vector<std::int64_t>& groups, std::size_t k = 10);

// What a random ranking scores in expectation (every order of a query's n - 1 others equally
// likely), exactly, over the same queries as retrieval_metrics: a query with R relevant items among
// N = n - 1 ranked has E[AP] = ((R - 1) / (N - 1) * (N - H_N) + H_N) / N (H_N the N-th harmonic
// number; 1 when N = 1), E[P@k] = R * min(k, N) / (N * k) and E[first rank] = (N + 1) / (R + 1).
// The report's "chance" row: a model at this level finds no covers. Throws as summarize_retrieval
// when no query has another item of its group.
RetrievalSummary chance_retrieval(const std::vector<std::int64_t>& groups, std::size_t k = 10);

}  // namespace mart::metrics
