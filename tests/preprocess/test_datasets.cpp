#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mart/core/error.h"
#include "mart/core/text.h"
#include "mart/preprocess/datasets.h"

namespace fs = std::filesystem;
using namespace mart::preprocess;

namespace {

fs::path fresh(const std::string& name) {
  auto d = fs::temp_directory_path() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void touch(const fs::path& p, const std::string& text = "x") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::vector<TrackEntry> list(DatasetOptions o) { return make_dataset(o)->tracks(); }

TEST(Csv, QuotesEscapesAndCrlf) {
  const auto d = fresh("mart_csv");
  touch(d / "a.csv", "a,\"b,c\",\"say \"\"hi\"\"\"\r\n1,,3\n");
  const auto rows = read_delimited((d / "a.csv").string(), ',');
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"a", "b,c", "say \"hi\""}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"1", "", "3"}));
  EXPECT_EQ(mart::split_list("a;;b;", ';'), (std::vector<std::string>{"a", "b"}));
}

TEST(Folder, RecursiveAudioOnlySortedWithOptionalLabels) {
  const auto d = fresh("mart_folder");
  touch(d / "b/two.flac");
  touch(d / "a/one.wav");
  touch(d / "a/notes.txt");
  touch(d / "three.MP3");
  touch(d / "labels.csv", "path,split,tags,class\na/one.wav,test,piano;slow,jazz\n");
  DatasetOptions o;
  o.input = d.string();
  o.labels_csv = (d / "labels.csv").string();
  const auto t = list(o);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].id, "a_one");
  EXPECT_EQ(t[0].split, "test");
  EXPECT_EQ(t[0].tags, (std::vector<std::string>{"piano", "slow"}));
  EXPECT_EQ(t[0].class_name, "jazz");
  EXPECT_EQ(t[1].id, "b_two");
  EXPECT_EQ(t[1].split, "train");  // unlabeled files default to train
  EXPECT_EQ(tag_vocabulary(t), (std::vector<std::string>{"piano", "slow"}));
}

TEST(Folder, SymlinkedFilesKeepTheirLabels) {
  // A tree of links (`cp -rs music tree`, e.g. to leave some files out): the CSV's paths are
  // relative to the tree, not to where the links point.
  const auto real = fresh("mart_folder_real"), tree = fresh("mart_folder_tree");
  touch(real / "g1/a.ogg");
  touch(real / "g2/b.wav");
  fs::create_directories(tree / "g1");
  fs::create_symlink(real / "g1/a.ogg", tree / "g1/a.ogg");
  fs::create_directory_symlink(real / "g2", tree / "g2");  // a linked folder too
  touch(tree / "labels.csv", "path,class\ng1/a.ogg,one\ng2/b.wav,two\n");
  DatasetOptions o;
  o.input = tree.string() + "/";  // a trailing slash changes nothing
  o.labels_csv = (tree / "labels.csv").string();
  const auto t = list(o);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].id, "g1_a");
  EXPECT_EQ(t[0].class_name, "one");
  EXPECT_EQ(t[1].id, "g2_b");
  EXPECT_EQ(t[1].class_name, "two");
}

TEST(Folder, ACsvThatNamesNoFileIsRefused) {
  const auto d = fresh("mart_folder_nomatch");
  touch(d / "a/one.wav");
  touch(d / "labels.csv", "path,class\nmusic/a/one.wav,jazz\n");  // relative to the wrong folder
  DatasetOptions o;
  o.input = d.string();
  o.labels_csv = (d / "labels.csv").string();
  try {
    list(o);
    FAIL() << "a CSV naming none of the files was accepted";
  } catch (const mart::ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("labels.csv"), std::string::npos) << m;
    EXPECT_NE(m.find("music/a/one.wav"), std::string::npos) << m;  // what the CSV has
    EXPECT_NE(m.find("'a/one.wav'"), std::string::npos) << m;      // what the folder has
  }
}

TEST(Folder, MissingInputNamesIt) {
  DatasetOptions o;
  o.input = "/nonexistent/mart_music";
  try {
    make_dataset(o);
    FAIL();
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/mart_music"), std::string::npos);
  }
}

TEST(Synth, ReadsTheManifest) {
  const auto d = fresh("mart_synthds");
  touch(d / "manifest.csv",
        "path,track_id,split,tags,class,cover_group,key\naudio/s-1.wav,s-1,valid,pad;slow,ambient,4,2\n"
        "audio/s-0.wav,s-0,train,drums,rock,4,0\n");
  DatasetOptions o;
  o.kind = "synth";
  o.input = d.string();
  const auto t = list(o);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].id, "s-0");
  EXPECT_EQ(t[1].split, "valid");
  EXPECT_EQ(t[1].cover_group, "4");
  EXPECT_EQ(class_vocabulary(t), (std::vector<std::string>{"ambient", "rock"}));
}

TEST(Mtat, TopTagsAndTheFolderSplit) {
  const auto d = fresh("mart_mtat");
  // Tags: guitar (3 positives), piano (2), rare (1). Top-2 keeps guitar and piano.
  touch(d / "annotations_final.csv",
        "\"clip_id\"\t\"guitar\"\t\"rare\"\t\"piano\"\t\"mp3_path\"\n"
        "\"2\"\t\"1\"\t\"0\"\t\"1\"\t\"0/a.mp3\"\n"
        "\"5\"\t\"1\"\t\"0\"\t\"0\"\t\"c/b.mp3\"\n"
        "\"7\"\t\"1\"\t\"0\"\t\"1\"\t\"e/c.mp3\"\n"
        "\"9\"\t\"0\"\t\"1\"\t\"0\"\t\"f/d.mp3\"\n");
  DatasetOptions o;
  o.kind = "mtat";
  o.input = d.string();
  o.mtat_top_tags = 2;
  auto t = list(o);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[0].split, "train");
  EXPECT_EQ(t[0].tags, (std::vector<std::string>{"guitar", "piano"}));
  EXPECT_EQ(t[1].split, "valid");
  EXPECT_EQ(t[2].split, "test");
  EXPECT_TRUE(t[3].tags.empty());
  o.mtat_drop_untagged = true;  // the tagging literature drops clips without a top tag
  EXPECT_EQ(list(o).size(), 3u);
  // User split lists override the folder split; unlisted clips are left out.
  touch(d / "splits/train.txt", "e/c.mp3\n");
  touch(d / "splits/test.txt", "2\tsome extra column\n");
  o.split_dir = (d / "splits").string();
  o.mtat_drop_untagged = false;
  t = list(o);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].id, "2");
  EXPECT_EQ(t[0].split, "test");
  EXPECT_EQ(t[1].split, "train");
}

TEST(Gtzan, GenreFoldersAreClasses) {
  const auto d = fresh("mart_gtzan");
  touch(d / "blues/blues.00000.au");
  touch(d / "jazz/jazz.00001.wav");
  touch(d / "jazz/readme.md");
  DatasetOptions o;
  o.kind = "gtzan";
  o.input = d.string();
  const auto t = list(o);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].class_name, "blues");
  EXPECT_EQ(t[1].class_name, "jazz");
  EXPECT_EQ(t[1].id, "jazz.00001");
}

TEST(Gtzan, SplitListsNameSymlinkedFilesByTheirPathInTheTree) {
  // Two genres hold a file of the same name, linked from elsewhere; the lists tell them apart by
  // their path under the root as given (resolving the links would leave only the shared name).
  const auto real = fresh("mart_gtzan_real"), tree = fresh("mart_gtzan_tree");
  touch(real / "x/a.au");
  touch(real / "y/a.au");
  fs::create_directories(tree / "blues");
  fs::create_directories(tree / "jazz");
  fs::create_symlink(real / "x/a.au", tree / "blues/a.au");
  fs::create_symlink(real / "y/a.au", tree / "jazz/a.au");
  const auto lists = fresh("mart_gtzan_lists");
  touch(lists / "train.txt", "blues/a.au\n");
  touch(lists / "test.txt", "jazz/a.au\n");
  DatasetOptions o;
  o.kind = "gtzan";
  o.input = tree.string();
  o.split_dir = lists.string();
  const auto t = list(o);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].class_name, "blues");
  EXPECT_EQ(t[0].split, "train");
  EXPECT_EQ(t[1].class_name, "jazz");
  EXPECT_EQ(t[1].split, "test");
  o.input = tree.string() + "/./";  // the same root spelled another way
  EXPECT_EQ(list(o).size(), 2u);
}

TEST(Gtzan, ListsThatNameNoFileAreRefusedWithAnExample) {
  const auto d = fresh("mart_gtzan_nolist");
  touch(d / "blues/blues.00000.au");
  const auto lists = fresh("mart_gtzan_nolist_lists");
  touch(lists / "train.txt", "genres/blues/blues.00000.au\n");  // relative to the wrong folder
  DatasetOptions o;
  o.kind = "gtzan";
  o.input = d.string();
  o.split_dir = lists.string();
  try {
    list(o);
    FAIL() << "split lists naming none of the files were accepted";
  } catch (const mart::ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("none of the 1 audio files"), std::string::npos) << m;
    EXPECT_NE(m.find("'blues/blues.00000.au'"), std::string::npos) << m;
  }
}

TEST(Covers, WorkIdAndPathPerLine) {
  const auto d = fresh("mart_covers");
  touch(d / "list.tsv", "work_id\tpath\nw1\ta/x.mp3\nw1\tb/y.mp3\nw2\tc/z.mp3\n");
  DatasetOptions o;
  o.kind = "covers";
  o.input = (d / "list.tsv").string();
  const auto t = list(o);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].cover_group, "w1");
  EXPECT_EQ(t[2].cover_group, "w2");
  EXPECT_EQ(t[0].path, (d / "a/x.mp3").string());
  EXPECT_EQ(t[0].split, "test");
}

TEST(Datasets, UnknownKindListsTheChoices) {
  DatasetOptions o;
  o.kind = "mtatt";
  try {
    make_dataset(o);
    FAIL();
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("folder, synth, mtat, gtzan or covers"), std::string::npos);
  }
}

}  // namespace
