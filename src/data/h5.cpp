#include "mart/data/h5.h"

#include <algorithm>

#include "mart/core/error.h"
#include "mart/core/h5_check.h"

namespace mart::data::h5 {

std::recursive_mutex& mutex() {
  static std::recursive_mutex m;
  return m;
}

Lock::Lock() : guard_(mutex()) {
  // Before the library's first call: no clean-up at exit. A file whose close failed (disk full)
  // stays in HDF5's tables, and closing it again at exit crashes (HDF5 1.10); every file we
  // write is closed, or removed, by its owner.
  static const bool no_atexit = [] { return H5dont_atexit() >= 0; }();
  (void)no_atexit;
  // The library is built thread-safe on Debian, so the error-printing setting is per thread.
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

Datatype half_type() {
  Lock lock;
  // The same calls as h5py's IEEE_F16LE: start from float32 LE, then 1 sign bit at 15, 5 exponent
  // bits at 10, 10 mantissa bits at 0, 2 bytes, bias 15.
  Datatype t(H5_CHECK(H5Tcopy(H5T_IEEE_F32LE)));
  H5_CHECK(H5Tset_fields(t.get(), 15, 10, 5, 0, 10));
  H5_CHECK(H5Tset_size(t.get(), 2));
  H5_CHECK(H5Tset_precision(t.get(), 16));
  H5_CHECK(H5Tset_ebias(t.get(), 15));
  return t;
}

Datatype string_type() {
  Lock lock;
  Datatype t(H5_CHECK(H5Tcopy(H5T_C_S1)));
  H5_CHECK(H5Tset_size(t.get(), H5T_VARIABLE));
  H5_CHECK(H5Tset_cset(t.get(), H5T_CSET_UTF8));
  return t;
}

Group create_group(hid_t loc, const std::string& path) {
  Lock lock;
  PropList gcpl(H5_CHECK(H5Pcreate(H5P_GROUP_CREATE)));
  H5_CHECK(H5Pset_obj_track_times(gcpl.get(), 0));  // same data, same bytes (see create_file)
  // Missing parents are made here with the same properties: HDF5's intermediate groups would
  // carry timestamps.
  for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (H5Lexists(loc, parent.c_str(), H5P_DEFAULT) <= 0)
      Group(H5_CHECK(H5Gcreate2(loc, parent.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT)));
  }
  return Group(H5_CHECK(H5Gcreate2(loc, path.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT)));
}

Group open_group(hid_t loc, const std::string& path) {
  Lock lock;
  return Group(H5_CHECK(H5Gopen2(loc, path.c_str(), H5P_DEFAULT)));
}

Dataset open_dataset(hid_t loc, const std::string& path) {
  Lock lock;
  hid_t id = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  if (id < 0) MART_FAIL("HDF5: cannot open dataset '", path, "': ", h5_error_string());
  return Dataset(id);
}

bool exists(hid_t loc, const std::string& path) {
  Lock lock;
  // H5Lexists fails (rather than answering no) when a parent is missing, so walk the components.
  size_t pos = 0;
  while (true) {
    const size_t slash = path.find('/', pos + 1);
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && prefix != "/" && H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0)
      return false;
    if (slash == std::string::npos) return true;
    pos = slash;
  }
}

std::vector<hsize_t> dims(hid_t dataset) {
  Lock lock;
  Dataspace space(H5_CHECK(H5Dget_space(dataset)));
  const int rank = H5_CHECK(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> d(static_cast<size_t>(rank));
  H5_CHECK(H5Sget_simple_extent_dims(space.get(), d.data(), nullptr));
  return d;
}

namespace {
void write_attr_raw(hid_t obj, const std::string& name, hid_t type, const void* value) {
  Lock lock;
  if (H5Aexists(obj, name.c_str()) > 0) H5_CHECK(H5Adelete(obj, name.c_str()));
  Dataspace space(H5_CHECK(H5Screate(H5S_SCALAR)));
  Attribute a(H5_CHECK(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  H5_CHECK(H5Awrite(a.get(), type, value));
}

Attribute open_attr(hid_t obj, const std::string& name) {
  hid_t id = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  if (id < 0) MART_FAIL("HDF5: attribute '", name, "' is missing: ", h5_error_string());
  return Attribute(id);
}
}  // namespace

void write_attr(hid_t obj, const std::string& name, int64_t v) {
  write_attr_raw(obj, name, H5T_NATIVE_INT64, &v);
}
void write_attr(hid_t obj, const std::string& name, double v) {
  write_attr_raw(obj, name, H5T_NATIVE_DOUBLE, &v);
}
void write_attr(hid_t obj, const std::string& name, const std::string& v) {
  Datatype t = string_type();
  const char* p = v.c_str();
  write_attr_raw(obj, name, t.get(), &p);
}

bool has_attr(hid_t obj, const std::string& name) {
  Lock lock;
  return H5Aexists(obj, name.c_str()) > 0;
}

int64_t read_attr_int(hid_t obj, const std::string& name) {
  Lock lock;
  Attribute a = open_attr(obj, name);
  int64_t v = 0;
  H5_CHECK(H5Aread(a.get(), H5T_NATIVE_INT64, &v));  // HDF5 converts any stored integer width
  return v;
}

double read_attr_double(hid_t obj, const std::string& name) {
  Lock lock;
  Attribute a = open_attr(obj, name);
  double v = 0;
  H5_CHECK(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v));
  return v;
}

std::string read_attr_string(hid_t obj, const std::string& name) {
  Lock lock;
  Attribute a = open_attr(obj, name);
  Datatype stored(H5_CHECK(H5Aget_type(a.get())));
  MART_CHECK(H5Tget_class(stored.get()) == H5T_STRING, "attribute '", name, "' is not a string");
  if (H5Tis_variable_str(stored.get()) > 0) {
    Datatype t = string_type();
    char* p = nullptr;
    H5_CHECK(H5Aread(a.get(), t.get(), &p));
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  // Fixed-length strings (another writer may use them): read the bytes, drop NUL padding.
  std::string s(H5Tget_size(stored.get()), '\0');
  H5_CHECK(H5Aread(a.get(), stored.get(), s.data()));
  return s.substr(0, s.find('\0'));
}

File create_file(const std::string& path) {
  Lock lock;
  PropList fapl(H5_CHECK(H5Pcreate(H5P_FILE_ACCESS)));
  H5_CHECK(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110));
  // No timestamps in object headers: the same data gives the same bytes, so a rerun can be
  // compared with (and the manifest's hash checked against) the first run.
  PropList fcpl(H5_CHECK(H5Pcreate(H5P_FILE_CREATE)));
  H5_CHECK(H5Pset_obj_track_times(fcpl.get(), 0));
  return File(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()));
}

void set_checksum(hid_t dcpl, const std::vector<hsize_t>& chunk) {
  Lock lock;
  H5_CHECK(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()));
  H5_CHECK(H5Pset_fletcher32(dcpl));
}

template <typename T>
void write_array(hid_t loc, const std::string& path, const std::vector<T>& v,
                 std::vector<hsize_t> shape, Checksum checksum) {
  Lock lock;
  if (shape.empty()) shape = {static_cast<hsize_t>(v.size())};
  hsize_t n = 1;
  for (hsize_t d : shape) n *= d;
  MART_CHECK(n == v.size(), "dataset '", path, "': shape holds ", n, " values, buffer ", v.size());
  Dataspace space(H5_CHECK(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr)));
  PropList dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)));
  H5_CHECK(H5Pset_obj_track_times(dcpl.get(), 0));
  if (checksum == Checksum::kFletcher32 && n > 0) {  // an empty dataset has no chunk to check
    hsize_t row = 1;
    for (size_t i = 1; i < shape.size(); ++i) row *= shape[i];
    std::vector<hsize_t> chunk = shape;
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(shape[0], (hsize_t{1} << 20) / sizeof(T) / std::max<hsize_t>(row, 1)));
    set_checksum(dcpl.get(), chunk);
  }
  Dataset d(H5_CHECK(H5Dcreate2(loc, path.c_str(), native_type<T>(), space.get(), H5P_DEFAULT,
                                dcpl.get(), H5P_DEFAULT)));
  if (n > 0) H5_CHECK(H5Dwrite(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()));
}

void write_strings(hid_t loc, const std::string& path, const std::vector<std::string>& v) {
  Lock lock;
  Datatype t = string_type();
  const hsize_t n = v.size();
  Dataspace space(H5_CHECK(H5Screate_simple(1, &n, nullptr)));
  PropList dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)));
  H5_CHECK(H5Pset_obj_track_times(dcpl.get(), 0));
  Dataset d(H5_CHECK(
      H5Dcreate2(loc, path.c_str(), t.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)));
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  if (n > 0) H5_CHECK(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
}

template <typename T>
std::vector<T> read_array(hid_t loc, const std::string& path) {
  Lock lock;
  Dataset d = open_dataset(loc, path);
  hsize_t n = 1;
  for (hsize_t x : dims(d.get())) n *= x;
  std::vector<T> v(n);
  if (n > 0) H5_CHECK(H5Dread(d.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()));
  return v;
}

std::vector<std::string> read_strings(hid_t loc, const std::string& path) {
  Lock lock;
  Dataset d = open_dataset(loc, path);
  const std::vector<hsize_t> shape = dims(d.get());
  MART_CHECK(shape.size() == 1, "dataset '", path, "' should be a 1-d list of strings");
  std::vector<char*> ptrs(shape[0], nullptr);
  std::vector<std::string> out;
  if (ptrs.empty()) return out;
  Datatype t = string_type();
  H5_CHECK(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  Dataspace space(H5_CHECK(H5Dget_space(d.get())));
  H5_CHECK(H5Dvlen_reclaim(t.get(), space.get(), H5P_DEFAULT, ptrs.data()));  // HDF5 allocated them
  return out;
}

#define MART_H5_ARRAY(T)                                                                       \
  template void write_array<T>(hid_t, const std::string&, const std::vector<T>&,               \
                               std::vector<hsize_t>, Checksum);                                \
  template std::vector<T> read_array<T>(hid_t, const std::string&);
MART_H5_ARRAY(uint8_t)
MART_H5_ARRAY(int32_t)
MART_H5_ARRAY(int64_t)
MART_H5_ARRAY(double)
MART_H5_ARRAY(float)  // embeddings
#undef MART_H5_ARRAY

}  // namespace mart::data::h5
