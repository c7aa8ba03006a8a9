#include "mart/run/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/data/manifest.h"
#include "mart/model/config.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace mart::run {

namespace {
constexpr const char* kMarker = "COMPLETE";

std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& run) {
  std::vector<std::pair<int64_t, fs::path>> out;
  const fs::path dir = fs::path(run) / "checkpoints";
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) != 0 || n.find(".tmp") != std::string::npos) continue;
    if (!fs::exists(e.path() / kMarker)) continue;
    out.emplace_back(std::stoll(n.substr(5)), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::string checkpoint_dir(const std::string& run, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%09lld", static_cast<long long>(step));
  return (fs::path(run) / "checkpoints" / buf).string();
}

void save_checkpoint(const std::string& run, const TrainState& s, model::MartModel& model,
                     torch::optim::Optimizer& optimizer, int keep) {
  const std::string final_dir = checkpoint_dir(run, s.step);
  const std::string tmp = final_dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  model::save_weights(*model, tmp + "/model.pt");
  torch::save(optimizer, tmp + "/optimizer.pt");
  json j = {{"step", s.step}, {"epoch", s.sampler.epoch}, {"batch", s.sampler.batch}, {"seed", s.seed},
            {"config_hash", s.config_hash}, {"model", s.model_canonical}};
  if (s.features) j["features"] = data::features_to_json(*s.features);
  write_file_atomic(tmp + "/state.json", j.dump(1));
  write_file_atomic(tmp + "/model.ini", model_ini(model->options));  // mart-eval rebuilds the model from it
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomic(final_dir + "/" + kMarker, "ok\n");
  // Keep the newest `keep`.
  auto all = complete_checkpoints(run);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i].second);
}

std::optional<std::string> latest_checkpoint(const std::string& run) {
  auto all = complete_checkpoints(run);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

TrainState read_train_state(const std::string& dir) {
  const std::string path = dir + "/state.json";
  try {
    const json j = json::parse(read_file(path));
    TrainState s;
    s.step = j.at("step").get<int64_t>();
    s.sampler.epoch = j.at("epoch").get<uint64_t>();
    s.sampler.batch = j.at("batch").get<uint64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.config_hash = j.at("config_hash").get<std::string>();
    s.model_canonical = j.at("model").get<std::string>();
    if (j.contains("features")) s.features = data::features_from_json(j.at("features"), path);
    return s;
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    MART_CONFIG_ERROR("checkpoint state '", path, "' is unreadable (", e.what(), "): delete that checkpoint directory to fall back to the one before");
  }
}

TrainState load_checkpoint(const std::string& dir, model::MartModel& model, torch::optim::Optimizer* optimizer,
                           const torch::Device& device) {
  TrainState s = read_train_state(dir);
  if (s.model_canonical != model->options.canonical())
    MART_CONFIG_ERROR("checkpoint '", dir, "' holds a model with options\n  ", s.model_canonical,
                      "\nbut the config asks for\n  ", model->options.canonical(),
                      "\nuse the config the checkpoint was trained with");
  model::load_weights(*model, dir + "/model.pt", device);
  // The optimizer's state (Adam's moments) must sit where the parameters are: map it as it reads.
  if (optimizer) torch::load(*optimizer, dir + "/optimizer.pt", device);
  return s;
}

}  // namespace mart::run
