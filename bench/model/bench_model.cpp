// mart-bench-model: one MART training step (forward, backward, Adam) on CPU, in C++ and in Python
// (bench/model/mart_step.py, the same architecture on the same LibTorch), split into encoder,
// part-whole transformer + head, and loss. Each (implementation, batch) runs in its own process,
// so the peak RSS reported is that configuration's own. The C++ step runs twice: with the CPU
// allocator mart-train installs (huge pages for large blocks, kept for reuse when freed:
// train.huge_pages and train.cpu_cache, mart/run/cpu_allocator.h) and with
// LibTorch's default (glibc), so the allocator's share is measured in the same run.
#include <sys/resource.h>
#include <unistd.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mart/core/error.h"
#include "mart/loss/hierarchical_contrastive_loss.h"
#include "mart/model/mart_model.h"
#include "mart/run/cpu_allocator.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Args {
  std::vector<int> batches{8, 16, 48};
  int n_mels = 128, frames = 128, threads = 2, warmup = 1, reps = 3;
  int worker_batch = 0;  // > 0: run the C++ step at this batch and print one JSON line
  int huge_pages = 1;    // the worker's allocator: 1 mart-train's, 0 LibTorch's default
  std::string python = "/usr/bin/python3";
  std::string script = MART_SOURCE_DIR "/bench/model/mart_step.py";
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) MART_CONFIG_ERROR("missing value after ", k);
      return argv[++i];
    };
    if (k == "--batches") a.batches = parse_list(value());
    else if (k == "--n-mels") a.n_mels = std::stoi(value());
    else if (k == "--frames") a.frames = std::stoi(value());
    else if (k == "--threads") a.threads = std::stoi(value());
    else if (k == "--warmup") a.warmup = std::stoi(value());
    else if (k == "--reps") a.reps = std::stoi(value());
    else if (k == "--worker-batch") a.worker_batch = std::stoi(value());
    else if (k == "--huge-pages") a.huge_pages = std::stoi(value());
    else if (k == "--python") a.python = value();
    else if (k == "--script") a.script = value();
    else {
      std::cout << "usage: mart-bench-model [--batches 8,16,48] [--n-mels 128] [--frames 128]\n"
                   "  [--threads 2] [--warmup 1] [--reps 3] [--python /usr/bin/python3] [--script mart_step.py]\n"
                   "  (--worker-batch B --huge-pages 0|1: one C++ worker, one JSON line)\n";
      std::exit(k == "--help" ? 0 : 2);
    }
  }
  return a;
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double current_rss_mib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1048576.0);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

int64_t count(const std::vector<torch::Tensor>& ps) {
  int64_t n = 0;
  for (const auto& p : ps) n += p.numel();
  return n;
}

// One C++ configuration; the same staged step as mart_step.py's bench().
json run_worker(const Args& a) {
  if (a.huge_pages) {  // as mart-train by default: huge pages, freed blocks kept for reuse
    mart::run::use_huge_page_cpu_allocator();
    mart::run::set_cpu_allocator_cache_limit(SIZE_MAX);
  }
  at::set_num_threads(a.threads);
  torch::manual_seed(0);
  mart::model::ModelOptions o;
  o.n_mels = a.n_mels;
  o.frames = a.frames;
  mart::model::MartModel model(o);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(3e-4).weight_decay(1e-6));
  const mart::loss::HierarchicalContrastiveLoss loss(o.loss_options());
  const int64_t b = a.worker_batch, c = o.clips_total();
  const auto view_a = torch::randn({b, 1, o.n_mels, o.frames});
  const auto view_b = torch::randn({b, c, o.n_mels, o.frames});
  const double rss_after_init = current_rss_mib();  // model, optimizer and inputs allocated
  std::map<std::string, std::vector<double>> times;

  auto step = [&] {
    const auto t0 = Clock::now();
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();  // as set_to_none=True
    // Forward in three stages cut by detach, so each stage's backward is timed on its own.
    const auto enc = model->encoder(torch::cat({view_a, view_b.reshape({b * c, 1, o.n_mels, o.frames})}));
    const auto cut1 = enc.detach().requires_grad_(true);
    const auto t1 = Clock::now();
    const auto hat = model->part_whole(model->split_levels(cut1.narrow(0, b, b * c).view({b, c, o.dim})));
    std::vector<torch::Tensor> z{model->head(cut1.narrow(0, 0, b))};
    for (const auto& h : hat) z.push_back(model->head(h));
    std::vector<torch::Tensor> cuts;
    for (const auto& x : z) cuts.push_back(x.detach().requires_grad_(true));
    const auto t2 = Clock::now();
    loss(std::vector<torch::Tensor>(cuts.begin() + 1, cuts.end()), cuts[0]).loss.backward();
    const auto t3 = Clock::now();
    std::vector<torch::Tensor> grads;
    for (const auto& x : cuts) grads.push_back(x.grad());
    torch::autograd::backward(z, grads);
    const auto t4 = Clock::now();
    enc.backward(cut1.grad());
    const auto t5 = Clock::now();
    adam.step();
    const auto t6 = Clock::now();
    return std::map<std::string, double>{
        {"encoder", seconds(t0, t1) + seconds(t4, t5)}, {"transformer", seconds(t1, t2) + seconds(t3, t4)},
        {"loss", seconds(t2, t3)}, {"optimizer", seconds(t5, t6)}, {"total", seconds(t0, t6)}};
  };
  for (int r = 0; r < a.warmup + a.reps; ++r) {
    const auto t = step();
    if (r >= a.warmup)
      for (const auto& [k, v] : t) times[k].push_back(v);
  }
  json median;
  for (auto& [k, v] : times) {
    std::sort(v.begin(), v.end());
    median[k] = v[v.size() / 2];
  }
  json params = {{"total", count(model->parameters())},
                 {"encoder", count(model->encoder->parameters())},
                 {"transformer", count(model->pwt->parameters())},
                 {"head", count(model->head->parameters())}};
  return {{"impl", "c++"}, {"batch", b}, {"median_s", median}, {"peak_rss_mib", peak_rss_mib()},
          {"rss_after_init_mib", rss_after_init}, {"params", params}, {"minor_faults", minor_faults()}};
}

json run_child(const std::string& cmd) {
  FILE* pipe = popen(cmd.c_str(), "r");
  MART_CHECK(pipe, "cannot run ", cmd);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int rc = pclose(pipe);
  MART_CHECK(rc == 0, cmd, " failed (status ", rc, "): ", out);
  const auto last_line = out.rfind("\n{");  // the result is the last line
  return json::parse(last_line == std::string::npos ? out : out.substr(last_line + 1));
}

// glibc's defaults give freed large blocks back to the kernel (mmap threshold, trim), so every
// step faults its activations in again: on the paper shape about 0.45 M minor faults per sample
// per step, and a quarter of the twin's time (measured, docs/dist.md). A PyTorch user can avoid that
// with three environment variables; the twin runs both ways and the faster is the baseline.
const char* const kTunedMalloc = "MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 "
                                 "MALLOC_TOP_PAD_=1073741824";

struct Row {
  json cpp, cpp_glibc, py_default, py_tuned;
  // The fastest PyTorch variant: what the ratios are against.
  const json& py() const {
    return py_tuned["median_s"]["total"].get<double>() < py_default["median_s"]["total"].get<double>() ? py_tuned
                                                                                                       : py_default;
  }
};

void print_table(const Args& a, const std::vector<Row>& rows) {
  std::printf("MART training step, CPU, %d threads, n_mels %d x T %d, N=4 M=2 (15 clips + 1 view-A clip "
              "per instance), median of %d steps after %d warm-up\n",
              a.threads, a.n_mels, a.frames, a.reps, a.warmup);
  std::printf("C++: mart-train's CPU allocator (huge pages for blocks >= 4 MiB, freed ones kept for reuse); "
              "C++ glibc: LibTorch's "
              "default allocator; THP %s\n",
              mart::run::huge_pages_available() ? "available on madvise" : "off (huge pages refused)");
  std::printf("| batch | part        | C++ s   | C++ glibc s | Python s | C++/Python | C++ glibc/Python |\n");
  std::printf("|------:|-------------|--------:|------------:|---------:|-----------:|-----------------:|\n");
  for (const auto& r : rows)
    for (const char* part : {"encoder", "transformer", "loss", "optimizer", "total"}) {
      const double c = r.cpp["median_s"][part], g = r.cpp_glibc["median_s"][part], p = r.py()["median_s"][part];
      std::printf("| %5d | %-11s | %7.3f | %11.3f | %8.3f | %10.2f | %16.2f |\n", r.cpp["batch"].get<int>(), part,
                  c, g, p, c / p, g / p);
    }
  std::printf("\nPython: the faster of the twin with glibc's defaults and with %s\n", kTunedMalloc);
  std::printf("| batch | Python default s | Python tuned malloc s | minor faults default / tuned / C++ |\n");
  std::printf("|------:|-----------------:|----------------------:|-----------------------------------:|\n");
  for (const auto& r : rows)
    std::printf("| %5d | %16.3f | %21.3f | %ld / %ld / %ld |\n", r.cpp["batch"].get<int>(),
                r.py_default["median_s"]["total"].get<double>(), r.py_tuned["median_s"]["total"].get<double>(),
                r.py_default.value("minor_faults", 0L), r.py_tuned.value("minor_faults", 0L),
                r.cpp.value("minor_faults", 0L));
  std::printf("\n| batch | C++ peak RSS MiB | C++ glibc | Python peak RSS MiB | C++/Python |\n");
  std::printf("|------:|-----------------:|----------:|--------------------:|-----------:|\n");
  for (const auto& r : rows) {
    const double c = r.cpp["peak_rss_mib"], g = r.cpp_glibc["peak_rss_mib"], p = r.py()["peak_rss_mib"];
    std::printf("| %5d | %16.0f | %9.0f | %19.0f | %10.2f |\n", r.cpp["batch"].get<int>(), c, g, p, c / p);
  }
  const auto& pc = rows.front().cpp["params"];
  const auto& pp = rows.front().py_default["params"];
  std::printf("\nparameters (C++ / Python): total %lld / %lld, encoder %lld / %lld, transformer %lld / %lld, "
              "head %lld / %lld\n",
              pc["total"].get<long long>(), pp["total"].get<long long>(), pc["encoder"].get<long long>(),
              pp["encoder"].get<long long>(), pc["transformer"].get<long long>(),
              pp["transformer"].get<long long>(), pc["head"].get<long long>(), pp["head"].get<long long>());
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse_args(argc, argv);
  if (a.worker_batch > 0) {
    std::cout << run_worker(a).dump() << std::endl;
    return 0;
  }
  setenv("OPENBLAS_NUM_THREADS", "1", 1);  // inherited by both workers
  std::ostringstream common;
  common << " --n-mels " << a.n_mels << " --frames " << a.frames << " --threads " << a.threads
         << " --warmup " << a.warmup << " --reps " << a.reps;
  // Resolved here: inside popen's shell, /proc/self/exe would be the shell.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<Row> rows;
  for (int b : a.batches) {
    const std::string bs = " --batch " + std::to_string(b);
    const std::string worker = self + " --worker-batch " + std::to_string(b) + common.str();
    Row r;
    std::cerr << "batch " << b << ": C++ ..." << std::endl;
    r.cpp = run_child(worker + " --huge-pages 1");
    std::cerr << "batch " << b << ": Python ..." << std::endl;
    const std::string twin = a.python + " " + a.script + " bench" + bs + common.str();
    r.py_default = run_child(twin);
    std::cerr << "batch " << b << ": Python with a tuned malloc ..." << std::endl;
    r.py_tuned = run_child(std::string("env ") + kTunedMalloc + " " + twin);
    std::cerr << "batch " << b << ": C++ with glibc's allocator ..." << std::endl;
    r.cpp_glibc = run_child(worker + " --huge-pages 0");
    rows.push_back(r);
  }
  print_table(a, rows);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "mart-bench-model: " << e.what() << std::endl;
  return 1;
}
