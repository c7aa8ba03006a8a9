// A checkpoint written on one device loads onto the device asked for (issue 16, defects 1-2).
// No GPU here: the test rewrites a CPU checkpoint so that its archives say every tensor was saved
// on cuda:0 (exactly what rank 0 of a GPU run writes) and loads it onto the CPU. Without a map
// location LibTorch puts such tensors back on cuda:0, which throws in a CPU build (checked below
// as the premise); with the rank's device they come back on it, equal to what was saved. The
// same code path maps to cuda:r on a GPU node.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mart/core/fs.h"
#include "mart/model/mart_model.h"
#include "mart/run/checkpoint.h"

namespace {

using namespace mart;
namespace fs = std::filesystem;

// Rewrites the storage locations in an archive's pickles from "cpu" to `device` (a string that
// pickles as BINUNICODE: opcode 'X', 4-byte little-endian length, bytes). Returns how many
// locations it changed.
int relocate_archive(const std::string& path, const std::string& device) {
  std::vector<std::pair<std::string, std::string>> records;
  uint64_t version = 0;
  {
    caffe2::serialize::PyTorchStreamReader reader(path);
    version = reader.version();
    for (const auto& name : reader.getAllRecords()) {
      if (name == "version" || name == ".data/version") continue;  // the writer adds its own
      auto [data, size] = reader.getRecord(name);
      records.emplace_back(name, std::string(static_cast<const char*>(data.get()), size));
    }
  }
  auto binunicode = [](const std::string& s) {
    std::string out = "X";
    const uint32_t n = static_cast<uint32_t>(s.size());
    out.append(reinterpret_cast<const char*>(&n), 4);  // little-endian on every machine we build for
    return out + s;
  };
  const std::string from = binunicode("cpu"), to = binunicode(device);
  int changed = 0;
  for (auto& [name, bytes] : records) {
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".pkl") != 0) continue;
    for (size_t at = bytes.find(from); at != std::string::npos; at = bytes.find(from, at + to.size())) {
      bytes.replace(at, from.size(), to);
      ++changed;
    }
  }
  const std::string tmp = path + ".relocated";
  {
    caffe2::serialize::PyTorchStreamWriter writer(tmp);
    writer.setMinVersion(version);
    for (const auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
    writer.writeEndOfFile();
  }
  fs::rename(tmp, path);
  return changed;
}

model::ModelOptions tiny() {
  auto m = model::ModelOptions::small();
  m.levels = 2;
  m.n_mels = 16;
  m.frames = 16;
  return m;
}

TEST(CheckpointDevice, ACheckpointSavedOnCuda0LoadsOntoTheRanksDevice) {
  const auto mo = tiny();
  const std::string run = (fs::temp_directory_path() / "mart_ckpt_device_test").string();
  fs::remove_all(run);
  torch::manual_seed(5);
  model::MartModel trained(mo);
  torch::optim::Adam opt(trained->parameters(), torch::optim::AdamOptions(1e-3));
  const auto a = torch::randn({2, 1, mo.n_mels, mo.frames});
  const auto b = torch::randn({2, mo.clips_total(), mo.n_mels, mo.frames});
  const auto out = trained->forward(a, b);
  (out.z_tilde0.square().sum() + out.z_hat[1].square().sum()).backward();
  opt.step();  // the optimizer now has state: Adam's moments for every parameter
  run::TrainState state;
  state.step = 1;
  state.model_canonical = mo.canonical();
  run::save_checkpoint(run, state, trained, opt, 2);
  const std::string dir = run::checkpoint_dir(run, 1);

  // What rank 0 of a GPU run writes: every storage says cuda:0.
  EXPECT_GT(relocate_archive(dir + "/model.pt", "cuda:0"), 0);
  EXPECT_GT(relocate_archive(dir + "/optimizer.pt", "cuda:0"), 0);
  // A GPU run records the digests of the files it wrote: record the relocated ones' (state.json's
  // "files", then state.json's own in the COMPLETE marker), or the integrity check refuses them.
  {
    auto digest = [](const std::string& path) {
      const auto d = mart::file_digest(path);
      return nlohmann::json{{"bytes", d.bytes}, {"fnv1a64", d.fnv1a64}};
    };
    auto state = nlohmann::json::parse(mart::read_file(dir + "/state.json"));
    for (const char* f : {"model.pt", "optimizer.pt"}) state["files"][f] = digest(dir + "/" + f);
    std::ofstream(dir + "/state.json") << state.dump(1);
    std::ofstream(dir + "/COMPLETE") << "ok\n" << nlohmann::json{{"state.json", digest(dir + "/state.json")}}.dump() << "\n";
    ASSERT_EQ(run::checkpoint_damage(dir), "");
  }
  // The premise: loading without a device goes for cuda:0 (an error without CUDA).
  {
    torch::serialize::InputArchive raw;
    if (torch::cuda::is_available()) {
      raw.load_from(dir + "/model.pt");
      torch::Tensor w;
      raw.read("encoder.blocks.0.conv.weight", w);
      EXPECT_TRUE(w.is_cuda());
    } else {
      EXPECT_ANY_THROW(raw.load_from(dir + "/model.pt"));
    }
  }

  torch::manual_seed(6);
  model::MartModel fresh(mo);
  torch::optim::Adam fresh_opt(fresh->parameters(), torch::optim::AdamOptions(1e-3));
  const auto loaded = run::load_checkpoint(dir, fresh, &fresh_opt, torch::kCPU);
  EXPECT_EQ(loaded.step, 1);
  std::vector<std::pair<std::string, torch::Tensor>> want;  // a copy: `trained` takes another step below
  for (const auto& [name, t] : model::state_dict(*trained)) want.emplace_back(name, t.detach().clone());
  const auto got = model::state_dict(*fresh);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(got[i].second.device().is_cpu()) << got[i].first;
    EXPECT_TRUE(torch::equal(got[i].second, want[i].second)) << got[i].first;
  }
  // Adam's moments and step count came back on the CPU: the next step, from the same gradients,
  // moves both models the same way (a fresh Adam would take a different first step).
  auto next_step = [&](model::MartModel& m, torch::optim::Adam& o) {
    o.zero_grad();
    const auto out2 = m->forward(a, b);
    (out2.z_tilde0.square().sum() + out2.z_hat[1].square().sum()).backward();
    o.step();
  };
  trained->train();
  fresh->train();
  next_step(trained, opt);
  next_step(fresh, fresh_opt);
  const auto p_fresh = fresh->parameters(), p_trained = trained->parameters();
  ASSERT_EQ(p_fresh.size(), p_trained.size());
  for (size_t i = 0; i < p_fresh.size(); ++i) {
    EXPECT_TRUE(p_fresh[i].device().is_cpu());
    EXPECT_TRUE(torch::allclose(p_fresh[i], p_trained[i], 1e-6, 1e-7)) << "parameter " << i;
  }
  // ... which a fresh optimizer does not reproduce (the premise of the comparison above).
  {
    torch::manual_seed(8);
    model::MartModel other(mo);
    torch::optim::Adam other_opt(other->parameters(), torch::optim::AdamOptions(1e-3));
    model::load_weights(*other, dir + "/model.pt", torch::kCPU);
    next_step(other, other_opt);
    bool all_close = true;
    const auto p_other = other->parameters();
    for (size_t i = 0; i < p_other.size(); ++i) all_close = all_close && torch::allclose(p_other[i], p_trained[i], 1e-6, 1e-7);
    EXPECT_FALSE(all_close);
  }

  // The evaluation path (mart-eval, mart-embed, fine-tuning) reads model.pt the same way.
  torch::manual_seed(7);
  model::MartModel for_eval(mo);
  model::load_weights(*for_eval, dir + "/model.pt", torch::kCPU);
  const auto eval_sd = model::state_dict(*for_eval);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_TRUE(torch::equal(eval_sd[i].second, want[i].second));
  fs::remove_all(run);
}

}  // namespace
