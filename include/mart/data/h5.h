#pragma once
// Thin RAII over the HDF5 C API for mart_data, and the one lock that serialises every HDF5 call.
//
// HDF5's library-wide state (its error stack, open-object tables, free lists) must not be used
// from two threads at once; the trainer reads shards on a prefetch thread while others may open
// files. Every function that touches HDF5 in mart_data holds h5::Lock for the duration of the
// call. The lock is recursive so that a handle's destructor (which closes under the lock) may run
// inside a locked section.
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace mart::data::h5 {

std::recursive_mutex& mutex();

// Holds the global HDF5 lock and silences HDF5's automatic error printing on this thread (we
// turn errors into exceptions with H5_CHECK; probing a garbage file must not spam stderr).
class Lock {
 public:
  Lock();
 private:
  std::lock_guard<std::recursive_mutex> guard_;
};

// A move-only owner of one hid_t, closed with `Close` in the destructor.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0) {
      Lock lock;
      Close(id_);  // a failing close has nothing left to tell the caller
      id_ = H5I_INVALID_HID;
    }
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Dataspace = Handle<H5Sclose>;
using Datatype = Handle<H5Tclose>;
using Attribute = Handle<H5Aclose>;
using PropList = Handle<H5Pclose>;

// IEEE binary16, little endian, laid out exactly as h5py defines it (HDF5 1.10 has no predefined
// half type): h5py and numpy read such a dataset as float16 with no help.
Datatype half_type();
// Variable-length UTF-8 strings (h5py: h5py.string_dtype()).
Datatype string_type();

// The native HDF5 type of a C++ scalar type we store.
template <typename T> hid_t native_type();
template <> inline hid_t native_type<uint8_t>() { return H5T_NATIVE_UINT8; }
template <> inline hid_t native_type<int32_t>() { return H5T_NATIVE_INT32; }
template <> inline hid_t native_type<int64_t>() { return H5T_NATIVE_INT64; }
template <> inline hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> inline hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> inline hid_t native_type<uint16_t>() { return H5T_NATIVE_UINT16; }

Group create_group(hid_t loc, const std::string& path);  // makes missing parents too
Group open_group(hid_t loc, const std::string& path);
Dataset open_dataset(hid_t loc, const std::string& path);
bool exists(hid_t loc, const std::string& path);  // every component of the path
std::vector<hsize_t> dims(hid_t dataset);

// Scalar attributes on a file, group or dataset.
void write_attr(hid_t obj, const std::string& name, int64_t v);
void write_attr(hid_t obj, const std::string& name, double v);
void write_attr(hid_t obj, const std::string& name, const std::string& v);
bool has_attr(hid_t obj, const std::string& name);
int64_t read_attr_int(hid_t obj, const std::string& name);
double read_attr_double(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);

// Creates (truncates) a file in the HDF5 1.10 format, whose metadata (superblock, object headers,
// chunk indexes) carry checksums, so damage to them fails the open or read. An invalid handle
// (false) when HDF5 can't create it; h5_error_string() then says why.
File create_file(const std::string& path);

// kFletcher32: a chunked dataset with HDF5's Fletcher-32 filter, so a damaged chunk fails the read
// ("data error detected by Fletcher32 checksum") instead of returning garbage.
enum class Checksum { kNone, kFletcher32 };
// Adds the Fletcher-32 filter (and a chunk shape, [chunk_rows, dims[1:]...]) to a dataset
// creation property list.
void set_checksum(hid_t dcpl, const std::vector<hsize_t>& chunk);

// Datasets written in one go: `shape` gives the dims (product == v.size()); contiguous, or
// chunked with a checksum per chunk of about 1 MiB.
template <typename T>
void write_array(hid_t loc, const std::string& path, const std::vector<T>& v,
                 std::vector<hsize_t> shape = {}, Checksum checksum = Checksum::kNone);
void write_strings(hid_t loc, const std::string& path, const std::vector<std::string>& v);
template <typename T>
std::vector<T> read_array(hid_t loc, const std::string& path);
std::vector<std::string> read_strings(hid_t loc, const std::string& path);

}  // namespace mart::data::h5
