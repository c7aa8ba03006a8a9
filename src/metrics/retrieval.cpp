#include "mart/metrics/retrieval.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "mart/core/error.h"

namespace mart::metrics {
namespace {

// Dot product of two float rows, accumulated in double over four lanes (the same code for every
// pair, so equal rows give exactly equal similarities).
double dot(const float* a, const float* b, std::size_t dim) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= dim; i += 4) {
    s0 += double(a[i]) * b[i];
    s1 += double(a[i + 1]) * b[i + 1];
    s2 += double(a[i + 2]) * b[i + 2];
    s3 += double(a[i + 3]) * b[i + 3];
  }
  for (; i < dim; ++i) s0 += double(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

std::vector<double> row_norms(const Embeddings& emb) {
  std::vector<double> norms(emb.n);
  for (std::size_t i = 0; i < emb.n; ++i) {
    const float* row = emb.data + i * emb.dim;
    for (std::size_t d = 0; d < emb.dim; ++d)
      MART_CHECK(std::isfinite(row[d]), "embedding [", i, ", ", d, "] is not finite");
    norms[i] = std::sqrt(dot(row, row, emb.dim));
  }
  return norms;
}

// Cosine similarity of the query with every item (the query's own entry is unused).
std::vector<double> similarities(const Embeddings& emb, const std::vector<double>& norms,
                                 std::size_t q) {
  std::vector<double> sim(emb.n, 0.0);
  const float* qrow = emb.data + q * emb.dim;
  for (std::size_t j = 0; j < emb.n; ++j) {
    const double denom = norms[q] * norms[j];
    sim[j] = denom > 0 ? dot(qrow, emb.data + j * emb.dim, emb.dim) / denom : 0.0;
  }
  return sim;
}

// 1-based ranks of the relevant items among the n-1 others, without sorting all of them:
// sort the R relevant items in ranking order, then place every other item between them with a
// binary search (O(n log R)). The query has a group (>= 0); items without one are never relevant.
std::vector<std::size_t> relevant_ranks(const std::vector<double>& sim,
                                        const std::vector<std::int64_t>& groups, std::size_t q) {
  auto before = [&](std::size_t a, std::size_t b) {
    return sim[a] > sim[b] || (sim[a] == sim[b] && a < b);
  };
  std::vector<std::size_t> rel;
  for (std::size_t j = 0; j < sim.size(); ++j)
    if (j != q && groups[j] == groups[q]) rel.push_back(j);
  if (rel.empty()) return {};
  std::sort(rel.begin(), rel.end(), before);
  // ahead[m]: other items ranked after rel[m-1] and before rel[m].
  std::vector<std::size_t> ahead(rel.size() + 1, 0);
  for (std::size_t j = 0; j < sim.size(); ++j) {
    if (j == q || groups[j] == groups[q]) continue;
    const auto it = std::partition_point(rel.begin(), rel.end(),
                                         [&](std::size_t r) { return before(r, j); });
    ++ahead[static_cast<std::size_t>(it - rel.begin())];
  }
  std::vector<std::size_t> ranks(rel.size());
  std::size_t others = 0;
  for (std::size_t m = 0; m < rel.size(); ++m) {
    others += ahead[m];
    ranks[m] = 1 + m + others;
  }
  return ranks;
}

}  // namespace

QueryResult score_relevant_ranks(std::vector<std::size_t> ranks, std::size_t n_ranked,
                                 std::size_t k) {
  MART_CHECK(k > 0, "precision at k needs k > 0");
  std::sort(ranks.begin(), ranks.end());
  QueryResult r;
  r.k = k;
  r.n_relevant = ranks.size();
  if (ranks.empty()) return r;
  double ap = 0.0;
  std::size_t in_top_k = 0;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    MART_CHECK(ranks[i] >= 1 && ranks[i] <= n_ranked, "rank ", ranks[i], " outside [1, ",
               n_ranked, "]");
    MART_CHECK(i == 0 || ranks[i] != ranks[i - 1], "rank ", ranks[i], " given twice");
    ap += static_cast<double>(i + 1) / static_cast<double>(ranks[i]);  // precision at that rank
    in_top_k += ranks[i] <= k;
  }
  r.average_precision = ap / static_cast<double>(ranks.size());
  r.precision_at_k = static_cast<double>(in_top_k) / static_cast<double>(k);
  r.first_rank = ranks.front();
  return r;
}

QueryResult score_ranking(const std::vector<std::uint8_t>& relevant_by_rank, std::size_t k) {
  std::vector<std::size_t> ranks;
  for (std::size_t i = 0; i < relevant_by_rank.size(); ++i)
    if (relevant_by_rank[i]) ranks.push_back(i + 1);
  return score_relevant_ranks(ranks, relevant_by_rank.size(), k);
}

std::vector<QueryResult> retrieval_block(const Embeddings& emb,
                                         const std::vector<std::int64_t>& groups, std::size_t q0,
                                         std::size_t q1, std::size_t k) {
  MART_CHECK(emb.n == 0 || (emb.data != nullptr && emb.dim > 0), "retrieval: empty embeddings");
  MART_CHECK(groups.size() == emb.n, "retrieval: ", groups.size(), " group ids for ", emb.n,
             " embeddings");
  MART_CHECK(q0 <= q1 && q1 <= emb.n, "retrieval: query range [", q0, ", ", q1,
             ") outside [0, ", emb.n, ")");
  const auto norms = row_norms(emb);
  std::vector<QueryResult> out;
  out.reserve(q1 - q0);
  for (std::size_t q = q0; q < q1; ++q) {
    if (groups[q] < 0) continue;  // no group: never a query (and never relevant to one)
    const auto sim = similarities(emb, norms, q);
    QueryResult r = score_relevant_ranks(relevant_ranks(sim, groups, q), emb.n - 1, k);
    r.query = q;
    out.push_back(r);
  }
  return out;
}

RetrievalSummary summarize_retrieval(std::vector<QueryResult> results) {
  std::sort(results.begin(), results.end(),
            [](const QueryResult& a, const QueryResult& b) { return a.query < b.query; });
  RetrievalSummary s;
  double ap = 0.0, p = 0.0, r1 = 0.0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    MART_CHECK(i == 0 || r.query != results[i - 1].query, "query ", r.query,
               " appears twice in the results");
    MART_CHECK(r.k == results[0].k, "results disagree on k (", r.k, " vs ", results[0].k, ")");
    if (r.n_relevant == 0) {
      ++s.n_skipped;
      continue;
    }
    ++s.n_queries;
    ap += r.average_precision;
    p += r.precision_at_k;
    r1 += static_cast<double>(r.first_rank);
  }
  MART_CHECK(s.n_queries > 0, "retrieval: none of the ", results.size(),
             " queries has another item of its group");
  const double n = static_cast<double>(s.n_queries);
  s.map = ap / n;
  s.precision_at_k = p / n;
  s.mr1 = r1 / n;
  s.k = results[0].k;
  return s;
}

RetrievalSummary chance_retrieval(const std::vector<std::int64_t>& groups, std::size_t k) {
  MART_CHECK(k > 0, "retrieval: k must be positive");
  std::map<std::int64_t, std::size_t> size;  // group -> items
  for (auto g : groups)
    if (g >= 0) ++size[g];
  const std::size_t n = groups.size();
  double harmonic = 0.0;  // H_N, N = n - 1
  for (std::size_t i = 1; i < n; ++i) harmonic += 1.0 / static_cast<double>(i);
  RetrievalSummary s;
  s.k = k;
  double ap = 0.0, p = 0.0, r1 = 0.0;
  for (auto g : groups) {
    if (g < 0) continue;  // a distractor queries nothing
    const std::size_t r = size[g] - 1;
    if (r == 0) {
      ++s.n_skipped;
      continue;
    }
    ++s.n_queries;
    const double N = static_cast<double>(n - 1), R = static_cast<double>(r);
    ap += n - 1 == 1 ? 1.0 : ((R - 1.0) / (N - 1.0) * (N - harmonic) + harmonic) / N;
    p += R * std::min(static_cast<double>(k), N) / (N * static_cast<double>(k));
    r1 += (N + 1.0) / (R + 1.0);
  }
  MART_CHECK(s.n_queries > 0, "retrieval: none of the ", groups.size(), " queries has another item of its group");
  const double q = static_cast<double>(s.n_queries);
  s.map = ap / q, s.precision_at_k = p / q, s.mr1 = r1 / q;
  return s;
}

RetrievalSummary retrieval_metrics(const Embeddings& emb, const std::vector<std::int64_t>& groups,
                                   std::size_t k) {
  return summarize_retrieval(retrieval_block(emb, groups, 0, emb.n, k));
}

RetrievalSummary retrieval_metrics(const std::vector<float>& embeddings, std::size_t dim,
                                   const std::vector<std::int64_t>& groups, std::size_t k) {
  MART_CHECK(dim > 0 && embeddings.size() % dim == 0, "retrieval: ", embeddings.size(),
             " values do not fill rows of ", dim);
  return retrieval_metrics(Embeddings{embeddings.data(), embeddings.size() / dim, dim}, groups, k);
}

}  // namespace mart::metrics
