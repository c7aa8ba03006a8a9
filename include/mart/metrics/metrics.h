#pragma once
// Evaluation metrics of mart-eval that need no model: ROC-AUC and average precision exactly as
// scikit-learn computes them, their macro averages over label columns, single-label
// classification metrics, and mean/spread over seeds. Pure functions, no torch, no MPI.
// Definitions and the scikit-learn correspondence: docs/metrics.md.
//
// Matrices are row-major [n_items, n_labels] in a flat vector. Scores must be finite and labels
// 0 or 1 (binary and multi-label) or in [0, n_classes) (classification); anything else throws
// mart::Error.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mart::metrics {

// ---- one binary column -------------------------------------------------------------------

// Area under the ROC curve, as sklearn.metrics.roc_auc_score(labels, scores): the ROC curve has
// one point per distinct score (tied items enter together, so a tie between a positive and a
// negative earns half credit) and the area is the trapezoid rule. Throws mart::Error when the
// labels hold only one class (sklearn raises ValueError there too).
double roc_auc(const std::vector<double>& scores, const std::vector<std::uint8_t>& labels);

// Average precision, as sklearn.metrics.average_precision_score(labels, scores):
// sum over distinct score thresholds t (descending) of (R(t) - R(t_prev)) * P(t); step-wise,
// not interpolated. With no positive label it is 0 (sklearn 1.2.1 warns and returns -0.0).
double average_precision(const std::vector<double>& scores,
                         const std::vector<std::uint8_t>& labels);

// True when the column holds both a 0 and a 1, i.e. when roc_auc is defined.
bool has_both_classes(const std::vector<std::uint8_t>& labels);

// ---- macro averages over the columns of [n_items, n_labels] -------------------------------

struct MacroResult {
  double value = 0.0;               // unweighted mean over the columns that were kept
  std::size_t kept = 0;             // columns in the mean
  std::size_t skipped = 0;          // columns left out (see each function)
  std::vector<double> per_column;   // every column's value; NaN for a skipped column
};

// Macro ROC-AUC. A column with only one class (no positives, or no negatives) has no ROC-AUC
// and is left out of the mean and counted in `skipped`; sklearn's roc_auc_score(average="macro")
// raises instead, and on the kept columns the value equals sklearn's. Throws mart::Error when
// no column is kept.
MacroResult macro_roc_auc(const std::vector<double>& scores,
                          const std::vector<std::uint8_t>& labels, std::size_t n_labels);
MacroResult macro_roc_auc(const std::vector<float>& scores,
                          const std::vector<std::uint8_t>& labels, std::size_t n_labels);

// Macro average precision ("PR-AUC"), as average_precision_score(labels, scores,
// average="macro") in scikit-learn 1.2.1: every column is kept, and a column with no positives
// scores 0 and still counts in the mean (sklearn warns "No positive class found in y_true").
// `skipped` is always 0.
MacroResult macro_average_precision(const std::vector<double>& scores,
                                    const std::vector<std::uint8_t>& labels,
                                    std::size_t n_labels);
MacroResult macro_average_precision(const std::vector<float>& scores,
                                    const std::vector<std::uint8_t>& labels,
                                    std::size_t n_labels);

// ---- multi-label tagging -------------------------------------------------------------------

struct TaggingMetrics {
  MacroResult roc_auc;  // macro_roc_auc
  MacroResult pr_auc;   // macro_average_precision
};
TaggingMetrics tagging_metrics(const std::vector<double>& scores,
                               const std::vector<std::uint8_t>& labels, std::size_t n_labels);
TaggingMetrics tagging_metrics(const std::vector<float>& scores,
                               const std::vector<std::uint8_t>& labels, std::size_t n_labels);

// ---- single-label classification -----------------------------------------------------------

// Per row, the index of the largest score; ties go to the lowest index, as numpy.argmax.
std::vector<std::int64_t> argmax_rows(const std::vector<double>& scores, std::size_t n_classes);
std::vector<std::int64_t> argmax_rows(const std::vector<float>& scores, std::size_t n_classes);

// [n, n_classes] row-major 0/1 matrix with a single 1 per row at labels[i].
std::vector<std::uint8_t> one_hot(const std::vector<std::int64_t>& labels, std::size_t n_classes);

// Fraction of rows whose argmax equals the label (sklearn accuracy_score(labels, argmax)).
double accuracy(const std::vector<double>& scores, const std::vector<std::int64_t>& labels,
                std::size_t n_classes);
double accuracy(const std::vector<float>& scores, const std::vector<std::int64_t>& labels,
                std::size_t n_classes);

struct ClassificationMetrics {
  double accuracy = 0.0;
  MacroResult roc_auc;  // one-vs-rest: macro_roc_auc on one_hot(labels); absent classes skipped
  MacroResult pr_auc;   // one-vs-rest: macro_average_precision on one_hot(labels)
};
ClassificationMetrics classification_metrics(const std::vector<double>& scores,
                                             const std::vector<std::int64_t>& labels,
                                             std::size_t n_classes);
ClassificationMetrics classification_metrics(const std::vector<float>& scores,
                                             const std::vector<std::int64_t>& labels,
                                             std::size_t n_classes);

// ---- several seeds -------------------------------------------------------------------------

struct MeanStd {
  double mean = 0.0;
  double std = 0.0;  // sample standard deviation (ddof = 1, numpy.std(x, ddof=1)); 0 when n == 1
  std::size_t n = 0;
};
// Throws mart::Error for an empty list or a non-finite value.
MeanStd mean_std(const std::vector<double>& values);

}  // namespace mart::metrics
