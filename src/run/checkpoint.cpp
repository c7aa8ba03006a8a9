#include "mart/run/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sstream>
#include <vector>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
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

namespace {
// A file of the checkpoint and what state.json records of it.
json digest_of(const std::string& bytes) {
  return {{"bytes", bytes.size()}, {"fnv1a64", hex64(fnv1a64(bytes))}};
}

// LibTorch serialises into memory first: its file writer throws from a destructor when the disk
// fills (an abort, not an error), and our writer names the path and the system's reason.
std::string model_bytes(const model::MartModel& model) {
  torch::serialize::OutputArchive archive;
  model->save(archive);
  std::ostringstream os;
  archive.save_to(os);
  return os.str();
}
std::string optimizer_bytes(const torch::optim::Optimizer& optimizer) {
  std::ostringstream os;
  torch::save(optimizer, os);
  return os.str();
}
}  // namespace

void save_checkpoint(const std::string& run, const TrainState& s, model::MartModel& model,
                     torch::optim::Optimizer& optimizer, int keep) {
  const std::string final_dir = checkpoint_dir(run, s.step);
  const std::string tmp = final_dir + ".tmp";
  std::error_code ec;
  try {
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) MART_OUTPUT_ERROR("cannot create '", tmp, "': ", ec.message(), kOutputFix);
    // Every file's size and hash go into state.json, state.json's into the COMPLETE marker: a
    // checkpoint whose bytes changed is refused by name, and resume falls back to the one before.
    json files = json::object();
    auto put = [&](const std::string& name, const std::string& bytes) {
      write_file_atomic(tmp + "/" + name, bytes);
      files[name] = digest_of(bytes);
    };
    put("model.pt", model_bytes(model));
    put("optimizer.pt", optimizer_bytes(optimizer));
    put("model.ini", model_ini(model->options));  // mart-eval rebuilds the model from it
    json j = {{"step", s.step}, {"epoch", s.sampler.epoch}, {"batch", s.sampler.batch}, {"seed", s.seed},
              {"config_hash", s.config_hash}, {"model", s.model_canonical}, {"files", files}};
    if (s.features) j["features"] = data::features_to_json(*s.features);
    const std::string state = j.dump(1);
    write_file_atomic(tmp + "/state.json", state);
    fs::remove_all(final_dir, ec);
    fs::rename(tmp, final_dir, ec);
    if (ec) MART_OUTPUT_ERROR("cannot rename '", tmp, "' to '", final_dir, "': ", ec.message(), kOutputFix);
    write_file_atomic(final_dir + "/" + kMarker, "ok\n" + json{{"state.json", digest_of(state)}}.dump() + "\n");
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);  // never leave a half-written checkpoint; the complete ones are untouched
    if (dynamic_cast<const OutputError*>(&e)) throw;
    MART_OUTPUT_ERROR("cannot write checkpoint '", final_dir, "': ", e.what(), kOutputFix);
  }
  // Keep the newest `keep`.
  auto all = complete_checkpoints(run);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i].second, ec);
}

std::string checkpoint_damage(const std::string& dir) {
  try {
    auto check = [&](const std::string& name, const json& want) -> std::string {
      const std::string path = dir + "/" + name;
      if (!fs::exists(path)) return name + " is missing";
      const FileDigest d = file_digest(path);
      if (d.bytes != want.at("bytes").get<int64_t>())
        return name + " has " + std::to_string(d.bytes) + " bytes, " + std::to_string(want.at("bytes").get<int64_t>()) + " were written";
      if (d.fnv1a64 != want.at("fnv1a64").get<std::string>())
        return name + " has content hash " + d.fnv1a64 + ", " + want.at("fnv1a64").get<std::string>() + " was written";
      return "";
    };
    // The marker: "ok" and, since checkpoints carry hashes, state.json's digest on the next line.
    const std::string marker = read_file(dir + "/" + kMarker);
    const size_t nl = marker.find('\n');
    if (nl != std::string::npos && nl + 1 < marker.size()) {
      const std::string why = check("state.json", json::parse(marker.substr(nl + 1)).at("state.json"));
      if (!why.empty()) return why;
    }
    const json state = json::parse(read_file(dir + "/state.json"));
    if (state.contains("files"))
      for (const auto& [name, want] : state.at("files").items()) {
        const std::string why = check(name, want);
        if (!why.empty()) return why;
      }
  } catch (const std::exception& e) {
    return std::string("unreadable: ") + e.what();
  }
  return "";
}

void verify_checkpoint(const std::string& dir) {
  const std::string why = checkpoint_damage(dir);
  if (!why.empty())
    MART_CONFIG_ERROR("checkpoint '", dir, "' is damaged: ", why,
                      ". Fix: mart-train --train.resume falls back to the checkpoint before it; to evaluate, give "
                      "that checkpoint's folder (or delete the damaged one)");
}

std::string resume_checkpoint(const std::string& run) {
  auto all = complete_checkpoints(run);
  std::string damaged;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string dir = it->second.string();
    const std::string why = checkpoint_damage(dir);
    if (why.empty()) return dir;
    spdlog::warn("checkpoint {} is damaged ({}): falling back to the one before it", dir, why);
    damaged += "\n  " + dir + ": " + why;
  }
  MART_CONFIG_ERROR("no intact checkpoint in '", run, "' to resume from:", damaged,
                    "\nstart a new run (another --run folder)");
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
  verify_checkpoint(dir);
  model::load_weights(*model, dir + "/model.pt", device);
  // The optimizer's state (Adam's moments) must sit where the parameters are: map it as it reads.
  if (optimizer) torch::load(*optimizer, dir + "/optimizer.pt", device);
  return s;
}

}  // namespace mart::run
