#include "mart/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "mart/core/error.h"

namespace mart::metrics {
namespace {

// One point of the curves: cumulative true and false positives after every item whose score
// is >= a distinct threshold, thresholds in descending order (sklearn's _binary_clf_curve).
struct CurvePoint {
  double tp;
  double fp;
};

void check_binary_input(const std::vector<double>& scores,
                        const std::vector<std::uint8_t>& labels) {
  MART_CHECK(scores.size() == labels.size(), "scores (", scores.size(), ") and labels (",
             labels.size(), ") differ in length");
  MART_CHECK(!scores.empty(), "no items to score");
  for (std::size_t i = 0; i < scores.size(); ++i) {
    MART_CHECK(std::isfinite(scores[i]), "score ", i, " is not finite (", scores[i], ")");
    MART_CHECK(labels[i] <= 1, "label ", i, " is ", int(labels[i]), ", expected 0 or 1");
  }
}

std::vector<CurvePoint> binary_curve(const std::vector<double>& scores,
                                     const std::vector<std::uint8_t>& labels) {
  check_binary_input(scores, labels);
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  std::vector<CurvePoint> curve;
  double tp = 0.0, fp = 0.0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const std::size_t i = order[k];
    (labels[i] ? tp : fp) += 1.0;
    const bool last_of_tie = k + 1 == order.size() || scores[order[k + 1]] != scores[i];
    if (last_of_tie) curve.push_back({tp, fp});
  }
  return curve;
}

template <typename T>
void check_matrix(const std::vector<T>& scores, std::size_t n_values, std::size_t n_cols,
                  const char* what) {
  MART_CHECK(n_cols > 0, what, ": zero columns");
  MART_CHECK(n_values % n_cols == 0, what, ": ", n_values, " values do not fill rows of ", n_cols);
  MART_CHECK(scores.size() == n_values, what, ": ", scores.size(), " scores for ", n_values,
             " labels");
}

// Column c of a row-major matrix, converted to Out (float -> double is exact).
template <typename Out, typename T>
std::vector<Out> column(const std::vector<T>& m, std::size_t n_cols, std::size_t c) {
  const std::size_t rows = m.size() / n_cols;
  std::vector<Out> out(rows);
  for (std::size_t r = 0; r < rows; ++r) out[r] = static_cast<Out>(m[r * n_cols + c]);
  return out;
}

double mean_of_kept(const std::vector<double>& per_column, std::size_t* kept) {
  double sum = 0.0;
  *kept = 0;
  for (double v : per_column) {
    if (std::isnan(v)) continue;
    sum += v;
    ++*kept;
  }
  return *kept ? sum / static_cast<double>(*kept) : std::numeric_limits<double>::quiet_NaN();
}

template <typename T>
MacroResult macro_roc_auc_t(const std::vector<T>& scores, const std::vector<std::uint8_t>& labels,
                            std::size_t n_labels) {
  check_matrix(scores, labels.size(), n_labels, "macro_roc_auc");
  MacroResult r;
  r.per_column.resize(n_labels);
  for (std::size_t c = 0; c < n_labels; ++c) {
    const auto y = column<std::uint8_t>(labels, n_labels, c);
    r.per_column[c] = has_both_classes(y) ? roc_auc(column<double>(scores, n_labels, c), y)
                                          : std::numeric_limits<double>::quiet_NaN();
  }
  r.value = mean_of_kept(r.per_column, &r.kept);
  r.skipped = n_labels - r.kept;
  MART_CHECK(r.kept > 0, "macro_roc_auc: none of the ", n_labels,
             " columns holds both classes, so ROC-AUC is undefined");
  return r;
}

template <typename T>
MacroResult macro_ap_t(const std::vector<T>& scores, const std::vector<std::uint8_t>& labels,
                       std::size_t n_labels) {
  check_matrix(scores, labels.size(), n_labels, "macro_average_precision");
  MacroResult r;
  r.per_column.resize(n_labels);
  for (std::size_t c = 0; c < n_labels; ++c) {
    r.per_column[c] = average_precision(column<double>(scores, n_labels, c),
                                        column<std::uint8_t>(labels, n_labels, c));
  }
  r.value = mean_of_kept(r.per_column, &r.kept);
  r.skipped = 0;
  return r;
}

template <typename T>
std::vector<std::int64_t> argmax_rows_t(const std::vector<T>& scores, std::size_t n_classes) {
  MART_CHECK(n_classes > 0, "argmax_rows: zero classes");
  MART_CHECK(scores.size() % n_classes == 0, "argmax_rows: ", scores.size(),
             " scores do not fill rows of ", n_classes);
  const std::size_t rows = scores.size() / n_classes;
  std::vector<std::int64_t> out(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    const T* row = scores.data() + r * n_classes;
    std::size_t best = 0;
    for (std::size_t c = 0; c < n_classes; ++c) {
      MART_CHECK(std::isfinite(static_cast<double>(row[c])), "score [", r, ", ", c,
                 "] is not finite");
      if (row[c] > row[best]) best = c;  // strict: ties keep the lowest index
    }
    out[r] = static_cast<std::int64_t>(best);
  }
  return out;
}

template <typename T>
double accuracy_t(const std::vector<T>& scores, const std::vector<std::int64_t>& labels,
                  std::size_t n_classes) {
  MART_CHECK(!labels.empty(), "accuracy: no items");
  MART_CHECK(scores.size() == labels.size() * n_classes, "accuracy: ", scores.size(),
             " scores for ", labels.size(), " items of ", n_classes, " classes");
  const auto pred = argmax_rows_t(scores, n_classes);
  std::size_t right = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    MART_CHECK(labels[i] >= 0 && static_cast<std::size_t>(labels[i]) < n_classes, "label ", i,
               " is ", labels[i], ", outside [0, ", n_classes, ")");
    right += pred[i] == labels[i];
  }
  return static_cast<double>(right) / static_cast<double>(labels.size());
}

template <typename T>
ClassificationMetrics classification_t(const std::vector<T>& scores,
                                       const std::vector<std::int64_t>& labels,
                                       std::size_t n_classes) {
  ClassificationMetrics m;
  m.accuracy = accuracy_t(scores, labels, n_classes);
  const auto y = one_hot(labels, n_classes);
  m.roc_auc = macro_roc_auc_t(scores, y, n_classes);
  m.pr_auc = macro_ap_t(scores, y, n_classes);
  return m;
}

}  // namespace

bool has_both_classes(const std::vector<std::uint8_t>& labels) {
  bool pos = false, neg = false;
  for (auto v : labels) (v ? pos : neg) = true;
  return pos && neg;
}

double roc_auc(const std::vector<double>& scores, const std::vector<std::uint8_t>& labels) {
  const auto curve = binary_curve(scores, labels);
  const double P = curve.back().tp, N = curve.back().fp;
  MART_CHECK(P > 0 && N > 0, "roc_auc: only one class present in the labels (", P,
             " positives, ", N, " negatives); ROC-AUC is not defined");
  // Trapezoids between consecutive curve points, starting at (0, 0); counts stay integers
  // (exact in double) until the single division.
  double area2 = 0.0, tp0 = 0.0, fp0 = 0.0;
  for (const auto& p : curve) {
    area2 += (p.fp - fp0) * (p.tp + tp0);
    tp0 = p.tp;
    fp0 = p.fp;
  }
  return area2 / (2.0 * P * N);
}

double average_precision(const std::vector<double>& scores,
                         const std::vector<std::uint8_t>& labels) {
  const auto curve = binary_curve(scores, labels);
  const double P = curve.back().tp;
  if (P == 0) return 0.0;
  double ap = 0.0, tp0 = 0.0;
  for (const auto& p : curve) {
    ap += (p.tp - tp0) / P * (p.tp / (p.tp + p.fp));
    tp0 = p.tp;
  }
  return ap;
}

MacroResult macro_roc_auc(const std::vector<double>& s, const std::vector<std::uint8_t>& y,
                          std::size_t n) {
  return macro_roc_auc_t(s, y, n);
}
MacroResult macro_roc_auc(const std::vector<float>& s, const std::vector<std::uint8_t>& y,
                          std::size_t n) {
  return macro_roc_auc_t(s, y, n);
}
MacroResult macro_average_precision(const std::vector<double>& s,
                                    const std::vector<std::uint8_t>& y, std::size_t n) {
  return macro_ap_t(s, y, n);
}
MacroResult macro_average_precision(const std::vector<float>& s,
                                    const std::vector<std::uint8_t>& y, std::size_t n) {
  return macro_ap_t(s, y, n);
}

TaggingMetrics tagging_metrics(const std::vector<double>& s, const std::vector<std::uint8_t>& y,
                               std::size_t n) {
  return {macro_roc_auc_t(s, y, n), macro_ap_t(s, y, n)};
}
TaggingMetrics tagging_metrics(const std::vector<float>& s, const std::vector<std::uint8_t>& y,
                               std::size_t n) {
  return {macro_roc_auc_t(s, y, n), macro_ap_t(s, y, n)};
}

std::vector<std::int64_t> argmax_rows(const std::vector<double>& s, std::size_t n) {
  return argmax_rows_t(s, n);
}
std::vector<std::int64_t> argmax_rows(const std::vector<float>& s, std::size_t n) {
  return argmax_rows_t(s, n);
}

std::vector<std::uint8_t> one_hot(const std::vector<std::int64_t>& labels, std::size_t n_classes) {
  std::vector<std::uint8_t> out(labels.size() * n_classes, 0);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    MART_CHECK(labels[i] >= 0 && static_cast<std::size_t>(labels[i]) < n_classes, "label ", i,
               " is ", labels[i], ", outside [0, ", n_classes, ")");
    out[i * n_classes + static_cast<std::size_t>(labels[i])] = 1;
  }
  return out;
}

double accuracy(const std::vector<double>& s, const std::vector<std::int64_t>& y, std::size_t n) {
  return accuracy_t(s, y, n);
}
double accuracy(const std::vector<float>& s, const std::vector<std::int64_t>& y, std::size_t n) {
  return accuracy_t(s, y, n);
}

ClassificationMetrics classification_metrics(const std::vector<double>& s,
                                             const std::vector<std::int64_t>& y, std::size_t n) {
  return classification_t(s, y, n);
}
ClassificationMetrics classification_metrics(const std::vector<float>& s,
                                             const std::vector<std::int64_t>& y, std::size_t n) {
  return classification_t(s, y, n);
}

MeanStd mean_std(const std::vector<double>& values) {
  MART_CHECK(!values.empty(), "mean_std: no values");
  for (double v : values) MART_CHECK(std::isfinite(v), "mean_std: value ", v, " is not finite");
  const double n = static_cast<double>(values.size());
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double ss = 0.0;
  for (double v : values) ss += (v - mean) * (v - mean);
  MeanStd r;
  r.mean = mean;
  r.n = values.size();
  r.std = values.size() > 1 ? std::sqrt(ss / (n - 1.0)) : 0.0;
  return r;
}

}  // namespace mart::metrics
