// N-API surface of the native backend. Thin on purpose: TypeScript validates user input
// and owns all policy; this layer checks its own arguments (it never trusts JS), hands
// them to the codec (encoding, CRC, scanning: codec.cc, crc32c.cc) and the file
// primitives (file_io.cc), and runs blocking calls off the event loop for the
// promise-returning functions. What may be encoded and how a batch or checkpoint is laid
// out are the codec's rules; this file only turns JS values into their arguments.
//
// Rules every function here follows:
// - Every entry point is a raw N-API callback built from the helpers below (one set of
//   argument checks for all of them); node-addon-api only registers the module.
// - Every napi_* status is checked. A failed call leaves a JS exception pending (the one
//   that made it fail, or an Error thrown here naming the call) and no output of the
//   failed call is used. A second exception is never thrown on top of a pending one.
// - Bytes are read only through napi_get_typedarray_info: type, pointer and length come
//   from the engine, never from JS-visible length/byteLength (a subclass can redefine
//   those). A view on a resizable ArrayBuffer reports its current length. A detached
//   ArrayBuffer is a TypeError; an empty attached Uint8Array is valid.
// - A buffer's pointer is taken after the last call that can run JS (only array element
//   access does, in encodeBatch) and used before the next one, so no getter can detach or
//   shrink a buffer native code is using.
// - Encoders refuse inputs that overlap the bytes they write.
// - No C++ exception crosses into V8: every entry point catches them (std::bad_alloc in
//   practice) and throws a JS Error instead.
#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "codec.h"
#include "crc32c.h"
#include "file_io.h"

namespace fastwal {
namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1: integers a JS number holds exactly
constexpr double kMaxFd = 2147483647.0;

// --- Errors ---------------------------------------------------------------------------

// True when a JS exception is pending. If even asking fails, assume one is: never stack a
// second exception on an unknown state.
bool ExceptionPending(napi_env env) {
  bool pending = false;
  return napi_is_exception_pending(env, &pending) != napi_ok || pending;
}

// The throw helpers return false so that `return ThrowType(...)` ends a check. The status
// of napi_throw_* itself is the one not acted upon: a failed throw has nowhere left to be
// reported, and the caller returns without a value either way.
bool ThrowType(napi_env env, const std::string& msg) {
  if (!ExceptionPending(env)) static_cast<void>(napi_throw_type_error(env, nullptr, msg.c_str()));
  return false;
}

bool ThrowType(napi_env env, const char* what, const char* problem) {
  return ThrowType(env, std::string("fastwal native: ") + what + problem);
}

// Arguments the codec refuses (a Check* function's answer).
bool ThrowRefused(napi_env env, const char* why) { return ThrowType(env, std::string("fastwal native: ") + why); }

bool ThrowError(napi_env env, const char* msg) {
  if (!ExceptionPending(env)) static_cast<void>(napi_throw_error(env, nullptr, msg));
  return false;
}

// A napi_* call returned `status`: throw an Error naming it, unless an exception is pending
// (usually the reason the call failed, e.g. a getter that threw). Allocates nothing, so it
// is safe in cleanup paths.
bool Failed(napi_env env, napi_status status, const char* call) {
  const napi_extended_error_info* info = nullptr;
  const char* detail = nullptr;
  if (napi_get_last_error_info(env, &info) == napi_ok && info != nullptr) detail = info->error_message;
  char msg[256];
  if (detail != nullptr)
    std::snprintf(msg, sizeof msg, "fastwal native: %s failed (%s)", call, detail);
  else
    std::snprintf(msg, sizeof msg, "fastwal native: %s failed (status %d)", call, static_cast<int>(status));
  if (!ExceptionPending(env)) static_cast<void>(napi_throw_error(env, nullptr, msg));
  return false;
}

// Calls fn(env, ...) and returns false from the enclosing bool function if it fails.
#define FW_NAPI(env, fn, ...)                                                     \
  do {                                                                            \
    const napi_status fw_status_ = fn((env), __VA_ARGS__);                        \
    if (fw_status_ != napi_ok) return ::fastwal::Failed((env), fw_status_, #fn); \
  } while (0)

bool MakeDouble(napi_env env, double v, napi_value* out) {
  FW_NAPI(env, napi_create_double, v, out);
  return true;
}

// An Error like Node's own I/O errors: message, negative errno, syscall.
bool MakeIoError(napi_env env, const IoResult& r, napi_value* error) {
  const char* syscall = r.syscall ? r.syscall : "io";
  const std::string msg = std::string(syscall) + " failed: " + std::strerror(r.err);
  napi_value message, e, code, name;
  FW_NAPI(env, napi_create_string_utf8, msg.data(), msg.size(), &message);
  FW_NAPI(env, napi_create_error, nullptr, message, &e);
  FW_NAPI(env, napi_create_int32, -r.err, &code);
  FW_NAPI(env, napi_set_named_property, e, "errno", code);
  FW_NAPI(env, napi_create_string_utf8, syscall, NAPI_AUTO_LENGTH, &name);
  FW_NAPI(env, napi_set_named_property, e, "syscall", name);
  *error = e;
  return true;
}

bool ThrowIoError(napi_env env, const IoResult& r) {
  napi_value e;
  if (MakeIoError(env, r, &e)) FW_NAPI(env, napi_throw, e);
  return false;
}

// --- Arguments ------------------------------------------------------------------------

// Reads up to N arguments; missing ones are undefined.
template <size_t N>
bool Args(napi_env env, napi_callback_info info, napi_value (&argv)[N]) {
  size_t argc = N;
  FW_NAPI(env, napi_get_cb_info, info, &argc, argv, nullptr, nullptr);
  return true;
}

bool IsNullish(napi_env env, napi_value v, bool* nullish) {
  napi_valuetype t = napi_undefined;
  FW_NAPI(env, napi_typeof, v, &t);
  *nullish = t == napi_undefined || t == napi_null;
  return true;
}

struct Bytes {
  uint8_t* data = nullptr;  // nullptr when len == 0
  size_t len = 0;
};

// A Uint8Array (a Buffer is one): see the rules at the top of the file.
bool GetBytes(napi_env env, napi_value v, const char* what, Bytes* out) {
  bool is_typed = false;
  FW_NAPI(env, napi_is_typedarray, v, &is_typed);
  if (!is_typed) return ThrowType(env, what, " must be a Uint8Array");
  napi_typedarray_type type = napi_int8_array;
  size_t len = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  FW_NAPI(env, napi_get_typedarray_info, v, &type, &len, &data, &buffer, nullptr);
  if (type != napi_uint8_array) return ThrowType(env, what, " must be a Uint8Array");
  bool detached = false;
  FW_NAPI(env, napi_is_detached_arraybuffer, buffer, &detached);
  if (detached) return ThrowType(env, what, " is a view of a detached ArrayBuffer");
  if (len != 0 && data == nullptr) return ThrowType(env, what, " has no backing store");
  out->data = len != 0 ? static_cast<uint8_t*>(data) : nullptr;
  out->len = len;
  return true;
}

// A Uint8Array, or undefined/null for none.
bool GetOptionalBytes(napi_env env, napi_value v, const char* what, Bytes* out) {
  bool nullish = false;
  if (!IsNullish(env, v, &nullish)) return false;
  if (nullish) {
    *out = Bytes{};
    return true;
  }
  return GetBytes(env, v, what, out);
}

// An integer number in [0, max] (max <= 2^53 - 1, so the conversion is exact).
bool GetUint(napi_env env, napi_value v, const char* what, double max, uint64_t* out) {
  double d = 0;
  const napi_status s = napi_get_value_double(env, v, &d);
  if (s == napi_number_expected) return ThrowType(env, what, " must be a number");
  if (s != napi_ok) return Failed(env, s, "napi_get_value_double");
  if (!(d >= 0) || d > max || std::floor(d) != d) return ThrowType(env, what, " must be an integer in range");
  *out = static_cast<uint64_t>(d);
  return true;
}

bool GetFd(napi_env env, napi_value v, int* fd) {
  uint64_t x = 0;
  if (!GetUint(env, v, "fd", kMaxFd, &x)) return false;
  *fd = static_cast<int>(x);
  return true;
}

bool GetBool(napi_env env, napi_value v, const char* what, bool* out) {
  const napi_status s = napi_get_value_bool(env, v, out);
  if (s == napi_boolean_expected) return ThrowType(env, what, " must be a boolean");
  if (s != napi_ok) return Failed(env, s, "napi_get_value_bool");
  return true;
}

// Whether [a, a + alen) and [b, b + blen) share a byte. Compared as integers: the ranges
// may lie in unrelated allocations, where pointer ordering is unspecified.
bool Overlaps(const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  if (alen == 0 || blen == 0) return false;
  const uintptr_t x = reinterpret_cast<uintptr_t>(a);
  const uintptr_t y = reinterpret_cast<uintptr_t>(b);
  return x < y + blen && y < x + alen;
}

// --- Entry points ---------------------------------------------------------------------

// Every exported function is a bool(env, info, result*): false means a JS exception is
// pending. A result left null returns undefined.
using Impl = bool (*)(napi_env, napi_callback_info, napi_value*);

template <Impl F>
napi_value Entry(napi_env env, napi_callback_info info) {
  napi_value result = nullptr;
  try {
    if (!F(env, info, &result)) return nullptr;
  } catch (const std::bad_alloc&) {
    ThrowError(env, "fastwal native: out of memory");
    return nullptr;
  } catch (...) {
    ThrowError(env, "fastwal native: internal error");
    return nullptr;
  }
  return result;
}

// --- CRC --------------------------------------------------------------------------------

bool JsCrc32cImplementation(napi_env env, napi_callback_info info, napi_value* result) {
  FW_NAPI(env, napi_create_string_utf8, Crc32cImplementation(), NAPI_AUTO_LENGTH, result);
  return true;
}

// crc32c(data, seed?)
bool JsCrc32c(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[2];
  if (!Args(env, info, argv)) return false;
  Bytes data;
  uint64_t seed = 0;
  if (!GetBytes(env, argv[0], "data", &data)) return false;
  napi_valuetype t = napi_undefined;
  FW_NAPI(env, napi_typeof, argv[1], &t);
  if (t != napi_undefined && !GetUint(env, argv[1], "seed", 4294967295.0, &seed)) return false;
  FW_NAPI(env, napi_create_uint32, Crc32c(static_cast<uint32_t>(seed), data.data, data.len), result);
  return true;
}

// --- Encoding ---------------------------------------------------------------------------
// crc32c, encodeRecord and encodeBatch run once per append or batch: one
// napi_get_typedarray_info per buffer. The codec's Check* functions decide what is
// encodable; the encoders lay the records out.

bool RoomFor(napi_env env, size_t cap, uint64_t pos, uint64_t need) {
  if (pos > cap || need > cap - pos) return ThrowType(env, "fastwal native: output buffer too small");
  return true;
}

bool NotOverlapping(napi_env env, const uint8_t* dst, uint64_t need, const uint8_t* in, size_t in_len,
                    const char* what) {
  if (Overlaps(dst, static_cast<size_t>(need), in, in_len))
    return ThrowType(env, what, " must not overlap the bytes being written");
  return true;
}

// encodeRecord(out, pos, type, lsn, mark, key, value?) -> end position. Standalone PUT/DEL.
bool JsEncodeRecord(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[7];
  if (!Args(env, info, argv)) return false;
  Bytes out, key, value;
  uint64_t pos = 0, type = 0, lsn = 0, mark = 0;
  if (!GetBytes(env, argv[0], "out", &out) || !GetUint(env, argv[1], "pos", kMaxSafe, &pos) ||
      !GetUint(env, argv[2], "type", 255, &type) || !GetUint(env, argv[3], "lsn", kMaxSafe, &lsn) ||
      !GetUint(env, argv[4], "mark", kMaxSafe, &mark) || !GetBytes(env, argv[5], "key", &key) ||
      !GetOptionalBytes(env, argv[6], "value", &value))
    return false;
  const Op op{static_cast<uint8_t>(type), key.data, key.len, value.data, value.len};
  if (const char* bad = CheckRecord(op.type, op.key_len, op.value_len, lsn, mark)) return ThrowRefused(env, bad);
  const uint64_t need = OpRecordSize(op);
  if (!RoomFor(env, out.len, pos, need)) return false;
  uint8_t* dst = out.data + pos;
  if (!NotOverlapping(env, dst, need, key.data, key.len, "key") ||
      !NotOverlapping(env, dst, need, value.data, value.len, "value"))
    return false;
  const size_t n = EncodeOp(dst, op, lsn, mark);
  return MakeDouble(env, static_cast<double>(pos + n), result);
}

// encodeBatch(out, pos, types, keys, values, first, mark) -> end position.
// Writes the whole batch (codec.h EncodeBatch: BEGIN, the operations, COMMIT) in one pass.
bool JsEncodeBatch(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[7];
  if (!Args(env, info, argv)) return false;
  Bytes out, types;
  uint64_t pos = 0, first = 0, mark = 0;
  if (!GetBytes(env, argv[0], "out", &out) || !GetUint(env, argv[1], "pos", kMaxSafe, &pos) ||
      !GetBytes(env, argv[2], "types", &types) || !GetUint(env, argv[5], "first", kMaxSafe, &first) ||
      !GetUint(env, argv[6], "mark", kMaxSafe, &mark))
    return false;
  bool ka = false, va = false;
  FW_NAPI(env, napi_is_array, argv[3], &ka);
  FW_NAPI(env, napi_is_array, argv[4], &va);
  if (!ka || !va) return ThrowType(env, "fastwal native: keys and values must be arrays");
  uint32_t nk = 0, nv = 0;
  FW_NAPI(env, napi_get_array_length, argv[3], &nk);
  FW_NAPI(env, napi_get_array_length, argv[4], &nv);
  const size_t count = types.len;
  if (count == 0 || count > 0xFFFFFFFFu || nk != count || nv != count)
    return ThrowType(env, "fastwal native: batch arrays must have the same, non-zero length");
  if (const char* bad = CheckBatch(count, first, mark)) return ThrowRefused(env, bad);
  // Every record takes at least a header: bounds count by the memory the caller gave us
  // before anything is allocated for it.
  if (!RoomFor(env, out.len, pos, MinBatchSize(count))) return false;

  // Element access can run JS (index getters), which may detach or resize any buffer: take
  // every element first, and only then the pointers (out and types again included).
  std::vector<napi_value> kv(count), vv(count);
  for (uint32_t i = 0; i < count; ++i) {
    FW_NAPI(env, napi_get_element, argv[3], i, &kv[i]);
    FW_NAPI(env, napi_get_element, argv[4], i, &vv[i]);
  }
  // From here on nothing runs JS.
  if (!GetBytes(env, argv[0], "out", &out) || !GetBytes(env, argv[2], "types", &types)) return false;
  if (types.len != count) return ThrowType(env, "fastwal native: batch arrays must have the same, non-zero length");

  std::vector<Op> ops(count);
  for (uint32_t i = 0; i < count; ++i) {
    Op& op = ops[i];
    op.type = types.data[i];  // read once: the encoder uses this copy
    // The type first (lengths 0 pass the other checks), then the buffers.
    if (const char* bad = CheckOp(op.type, 0, 0)) return ThrowRefused(env, bad);
    Bytes key, value;
    if (!GetBytes(env, kv[i], "key", &key) || !GetOptionalBytes(env, vv[i], "value", &value)) return false;
    op.key = key.data;
    op.key_len = key.len;
    op.value = value.data;
    op.value_len = value.len;
    if (const char* bad = CheckOp(op.type, op.key_len, op.value_len)) return ThrowRefused(env, bad);
  }
  const uint64_t need = BatchSize(ops.data(), count);
  if (!RoomFor(env, out.len, pos, need)) return false;
  uint8_t* const dst = out.data + pos;
  if (!NotOverlapping(env, dst, need, types.data, types.len, "types")) return false;
  for (const Op& op : ops)
    if (!NotOverlapping(env, dst, need, op.key, op.key_len, "key") ||
        !NotOverlapping(env, dst, need, op.value, op.value_len, "value"))
      return false;
  const size_t n = EncodeBatch(dst, ops.data(), count, first, mark);
  return MakeDouble(env, static_cast<double>(pos + n), result);
}

// encodeCheckpoint(out, pos, lsn, mark, checkpointLsn) -> end position.
bool JsEncodeCheckpoint(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[5];
  if (!Args(env, info, argv)) return false;
  Bytes out;
  uint64_t pos = 0, lsn = 0, mark = 0, cp = 0;
  if (!GetBytes(env, argv[0], "out", &out) || !GetUint(env, argv[1], "pos", kMaxSafe, &pos) ||
      !GetUint(env, argv[2], "lsn", kMaxSafe, &lsn) || !GetUint(env, argv[3], "mark", kMaxSafe, &mark) ||
      !GetUint(env, argv[4], "checkpointLsn", kMaxSafe, &cp))
    return false;
  if (const char* bad = CheckCheckpoint(lsn, mark, cp)) return ThrowRefused(env, bad);
  if (!RoomFor(env, out.len, pos, kCheckpointRecordSize)) return false;
  const size_t n = EncodeCheckpoint(out.data + pos, lsn, mark, cp);
  return MakeDouble(env, static_cast<double>(pos + n), result);
}

// --- Scanning ---------------------------------------------------------------------------

// [bytes, status, stop, need, index]
bool ScanOutput(napi_env env, size_t bytes, const ScanResult& r, const std::vector<double>& ix,
                napi_value* result) {
  void* data = nullptr;
  napi_value ab, index, out;
  FW_NAPI(env, napi_create_arraybuffer, ix.size() * sizeof(double), &data, &ab);
  if (!ix.empty()) std::memcpy(data, ix.data(), ix.size() * sizeof(double));
  FW_NAPI(env, napi_create_typedarray, napi_float64_array, ix.size(), ab, 0, &index);
  FW_NAPI(env, napi_create_array_with_length, 5, &out);
  const double fields[4] = {static_cast<double>(bytes), static_cast<double>(r.status), static_cast<double>(r.stop),
                            static_cast<double>(r.need)};
  for (uint32_t i = 0; i < 4; ++i) {
    napi_value v;
    if (!MakeDouble(env, fields[i], &v)) return false;
    FW_NAPI(env, napi_set_element, out, i, v);
  }
  FW_NAPI(env, napi_set_element, out, 4, index);
  *result = out;
  return true;
}

// (buf, start, end)
bool ScanArgs(napi_env env, napi_callback_info info, Bytes* buf, uint64_t* start, uint64_t* end) {
  napi_value argv[3];
  if (!Args(env, info, argv)) return false;
  if (!GetBytes(env, argv[0], "buf", buf) || !GetUint(env, argv[1], "start", kMaxSafe, start) ||
      !GetUint(env, argv[2], "end", kMaxSafe, end))
    return false;
  if (*start > *end || *end > buf->len) return ThrowType(env, "fastwal native: scan range outside buffer");
  return true;
}

// scan(buf, start, end) -> [end, status, stop, need, index]
bool JsScan(napi_env env, napi_callback_info info, napi_value* result) {
  Bytes buf;
  uint64_t start = 0, end = 0;
  if (!ScanArgs(env, info, &buf, &start, &end)) return false;
  std::vector<double> ix;
  const ScanResult r = ScanRecords(buf.data, start, end, SIZE_MAX, &ix);
  return ScanOutput(env, end, r, ix, result);
}

// findNextRecord(buf, start, end) -> offset of the next valid record, or end.
bool JsFindNextRecord(napi_env env, napi_callback_info info, napi_value* result) {
  Bytes buf;
  uint64_t start = 0, end = 0;
  if (!ScanArgs(env, info, &buf, &start, &end)) return false;
  return MakeDouble(env, static_cast<double>(FindNextRecord(buf.data, start, end)), result);
}

// --- File I/O ---------------------------------------------------------------------------

struct IoArgs {
  int fd = -1;
  uint8_t* data = nullptr;
  size_t len = 0;
  uint64_t position = 0;
};

// (fd, buf, off, len, position)
bool WriteArgs(napi_env env, const napi_value* argv, IoArgs* a) {
  Bytes buf;
  uint64_t off = 0, len = 0;
  if (!GetFd(env, argv[0], &a->fd) || !GetBytes(env, argv[1], "buf", &buf) ||
      !GetUint(env, argv[2], "offset", kMaxSafe, &off) || !GetUint(env, argv[3], "length", kMaxSafe, &len) ||
      !GetUint(env, argv[4], "position", kMaxSafe, &a->position))
    return false;
  if (off > buf.len || len > buf.len - off) return ThrowType(env, "fastwal native: write range outside buffer");
  a->data = len != 0 ? buf.data + off : nullptr;
  a->len = static_cast<size_t>(len);
  return true;
}

// (fd, buf, position): reads up to buf.length bytes at position into buf, scans them.
bool ReadArgs(napi_env env, const napi_value* argv, IoArgs* a) {
  Bytes buf;
  if (!GetFd(env, argv[0], &a->fd) || !GetBytes(env, argv[1], "buf", &buf) ||
      !GetUint(env, argv[2], "position", kMaxSafe, &a->position))
    return false;
  a->data = buf.data;
  a->len = buf.len;
  return true;
}

// (fd, offset, length)
bool ZeroArgs(napi_env env, const napi_value* argv, int* fd, uint64_t* off, uint64_t* len) {
  return GetFd(env, argv[0], fd) && GetUint(env, argv[1], "offset", kMaxSafe, off) &&
         GetUint(env, argv[2], "length", kMaxSafe, len);
}

// The *Blocking functions run on the calling thread; the others return a promise and run
// on the libuv pool. Nothing syncs unless its name says so (or write's dataSync flag).

// writeBlocking(fd, buf, off, len, position): writes, does not sync.
bool JsWriteBlocking(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[5];
  IoArgs a;
  if (!Args(env, info, argv) || !WriteArgs(env, argv, &a)) return false;
  const IoResult r = WriteAll(a.fd, a.data, a.len, a.position);
  if (r.err) return ThrowIoError(env, r);
  return true;
}

// fdatasyncBlocking(fd)
bool JsFdatasyncBlocking(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[1];
  int fd = -1;
  if (!Args(env, info, argv) || !GetFd(env, argv[0], &fd)) return false;
  const IoResult r = DataSync(fd);
  if (r.err) return ThrowIoError(env, r);
  return true;
}

// zeroFillBlocking(fd, offset, length)
bool JsZeroFillBlocking(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[3];
  int fd = -1;
  uint64_t off = 0, len = 0;
  if (!Args(env, info, argv) || !ZeroArgs(env, argv, &fd, &off, &len)) return false;
  const IoResult r = ZeroFill(fd, off, len);
  if (r.err) return ThrowIoError(env, r);
  return true;
}

// readScanBlocking(fd, buf, position) -> [bytes, status, stop, need, index]
bool JsReadScanBlocking(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[3];
  IoArgs a;
  if (!Args(env, info, argv) || !ReadArgs(env, argv, &a)) return false;
  const IoResult r = ReadFull(a.fd, a.data, a.len, a.position);
  if (r.err) return ThrowIoError(env, r);
  std::vector<double> ix;
  const ScanResult s = ScanRecords(a.data, 0, r.bytes, SIZE_MAX, &ix);
  return ScanOutput(env, r.bytes, s, ix, result);
}

bool NonZeroOutput(napi_env env, int64_t at, uint64_t end, napi_value* result) {
  napi_value v;
  FW_NAPI(env, napi_create_array_with_length, 2, result);
  if (!MakeDouble(env, static_cast<double>(at), &v)) return false;
  FW_NAPI(env, napi_set_element, *result, 0, v);
  if (!MakeDouble(env, static_cast<double>(end), &v)) return false;
  FW_NAPI(env, napi_set_element, *result, 1, v);
  return true;
}

// (fd, position)
bool NonZeroArgs(napi_env env, const napi_value* argv, int* fd, uint64_t* position) {
  return GetFd(env, argv[0], fd) && GetUint(env, argv[1], "position", kMaxSafe, position);
}

// findNonZeroBlocking(fd, position) -> [offset of the first non-zero byte or -1, end]
bool JsFindNonZeroBlocking(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[2];
  int fd = -1;
  uint64_t position = 0, end = 0;
  int64_t at = -1;
  if (!Args(env, info, argv) || !NonZeroArgs(env, argv, &fd, &position)) return false;
  const IoResult r = FindNonZero(fd, position, &at, &end);
  if (r.err) return ThrowIoError(env, r);
  return NonZeroOutput(env, at, end, result);
}

// One job type for every async call: it references the JS buffer it reads or writes until
// it settles, runs one blocking call on the libuv pool and settles a promise. Only plain
// C++ data crosses to the pool thread. The buffer is checked (attached, in range) before
// the job is queued; the caller must not detach or shrink it while the promise is pending
// (the TypeScript layer owns these buffers and never does).
class Job {
 public:
  enum Kind { kWrite, kWriteThenDataSync, kDataSync, kZeroFill, kReadScan, kFindNonZero };

  explicit Job(Kind kind) : kind_(kind) {}

  static constexpr size_t kMaxPublish = 64;

  IoArgs io;
  uint64_t zero_len = 0;

  // After a successful write + sync, also write these bytes at offset 0 of fd.
  void SetPublish(int fd, const uint8_t* data, size_t len) {
    pub_fd_ = fd;
    pub_len_ = len;
    std::memcpy(pub_, data, len);
  }

  // Queues the job and returns its promise. Takes ownership of job in every case.
  // keep_alive (may be null) stays referenced until the job settles.
  static bool Start(napi_env env, Job* job, napi_value keep_alive, napi_value* promise) {
    if (job->Queue(env, keep_alive, promise)) return true;
    // Not queued: Complete will never run. A created promise is settled with the error
    // rather than left pending; otherwise the exception is the caller's to throw.
    bool settled = false;
    if (job->deferred_ != nullptr) settled = job->RejectWithPending(env);
    job->Release(env);
    delete job;
    return settled;
  }

 private:
  bool Queue(napi_env env, napi_value keep_alive, napi_value* promise) {
    if (keep_alive != nullptr) FW_NAPI(env, napi_create_reference, keep_alive, 1, &buffer_ref_);
    napi_value name;
    FW_NAPI(env, napi_create_string_utf8, "fastwal:io", NAPI_AUTO_LENGTH, &name);
    FW_NAPI(env, napi_create_async_work, nullptr, name, Execute, Complete, this, &work_);
    FW_NAPI(env, napi_create_promise, &deferred_, promise);
    FW_NAPI(env, napi_queue_async_work, work_);
    return true;
  }

  // Pool thread: no N-API, no JS, and no C++ exception may escape.
  static void Execute(napi_env, void* data) {
    Job* job = static_cast<Job*>(data);
    try {
      job->Run();
    } catch (...) {
      job->out_of_memory_ = true;  // the only thing Run can throw: the scan index's or zero check's allocation
    }
  }

  void Run() {
    switch (kind_) {
      case kWrite:
      case kWriteThenDataSync:
        result_ = WriteAll(io.fd, io.data, io.len, io.position);
        if (!result_.err && kind_ == kWriteThenDataSync) result_ = DataSync(io.fd);
        // Best effort: a failed publish leaves the file to the caller's next write.
        if (!result_.err && pub_len_ > 0) published_ = WriteAll(pub_fd_, pub_, pub_len_, 0).err == 0;
        break;
      case kDataSync:
        result_ = DataSync(io.fd);
        break;
      case kZeroFill:
        result_ = ZeroFill(io.fd, io.position, zero_len);
        break;
      case kReadScan:
        result_ = ReadFull(io.fd, io.data, io.len, io.position);
        if (!result_.err) scan_ = ScanRecords(io.data, 0, result_.bytes, SIZE_MAX, &index_);
        break;
      case kFindNonZero:
        result_ = FindNonZero(io.fd, io.position, &non_zero_, &non_zero_end_);
        break;
    }
  }

  // Main thread, inside Node's handle and callback scopes. An exception still pending when
  // this returns (a failed cleanup) is reported by Node as uncaught.
  static void Complete(napi_env env, napi_status status, void* data) {
    Job* job = static_cast<Job*>(data);
    try {
      if (!job->Settle(env, status) && job->deferred_ != nullptr) job->RejectWithPending(env);
    } catch (...) {  // std::bad_alloc building the error message
      ThrowError(env, "fastwal native: out of memory settling an I/O job");
      if (job->deferred_ != nullptr) job->RejectWithPending(env);  // allocates nothing
    }
    job->Release(env);
    delete job;
  }

  bool Settle(napi_env env, napi_status status) {
    napi_value value = nullptr;
    if (status != napi_ok) return Failed(env, status, "napi_async_work");
    if (out_of_memory_) return ThrowError(env, "fastwal native: out of memory");
    if (result_.err) {
      if (!MakeIoError(env, result_, &value)) return false;
      return Finish(env, false, value);
    }
    if (kind_ == kReadScan) {
      if (!ScanOutput(env, result_.bytes, scan_, index_, &value)) return false;
    } else if (kind_ == kFindNonZero) {
      if (!NonZeroOutput(env, non_zero_, non_zero_end_, &value)) return false;
    } else if (kind_ == kWrite || kind_ == kWriteThenDataSync) {
      FW_NAPI(env, napi_get_boolean, published_, &value);
    } else {
      FW_NAPI(env, napi_get_undefined, &value);
    }
    return Finish(env, true, value);
  }

  bool Finish(napi_env env, bool resolve, napi_value value) {
    napi_deferred d = deferred_;
    deferred_ = nullptr;  // settled at most once: a failed settle is reported, not retried
    if (resolve)
      FW_NAPI(env, napi_resolve_deferred, d, value);
    else
      FW_NAPI(env, napi_reject_deferred, d, value);
    return true;
  }

  // Rejects the promise with the pending exception (taking it), so no promise stays pending.
  bool RejectWithPending(napi_env env) {
    napi_value e;
    FW_NAPI(env, napi_get_and_clear_last_exception, &e);
    return Finish(env, false, e);
  }

  void Release(napi_env env) {
    if (work_ != nullptr) {
      const napi_status s = napi_delete_async_work(env, work_);
      work_ = nullptr;
      if (s != napi_ok) Failed(env, s, "napi_delete_async_work");
    }
    if (buffer_ref_ != nullptr) {
      const napi_status s = napi_delete_reference(env, buffer_ref_);
      buffer_ref_ = nullptr;
      if (s != napi_ok) Failed(env, s, "napi_delete_reference");
    }
  }

  Kind kind_;
  napi_async_work work_ = nullptr;
  napi_deferred deferred_ = nullptr;
  napi_ref buffer_ref_ = nullptr;
  bool out_of_memory_ = false;
  IoResult result_{0, nullptr, 0};
  ScanResult scan_{0, 0, 0, 0};
  std::vector<double> index_;
  int64_t non_zero_ = -1;
  uint64_t non_zero_end_ = 0;
  int pub_fd_ = -1;
  size_t pub_len_ = 0;
  uint8_t pub_[kMaxPublish] = {};
  bool published_ = false;
};

// write(fd, buf, off, len, position, dataSync[, publishFd, publish]) -> Promise<boolean>.
// With dataSync the write and then an fdatasync run in one pool hop. With publishFd and
// publish (at most 64 bytes, copied now) as well, once the sync has succeeded the same hop
// writes publish at offset 0 of publishFd: the writer's durable LSN for other processes,
// without a second trip. Resolves true if that write was made (its failure is not an error:
// the caller publishes again), false otherwise.
bool JsWrite(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[8];
  IoArgs a;
  bool data_sync = false;
  if (!Args(env, info, argv) || !WriteArgs(env, argv, &a) || !GetBool(env, argv[5], "dataSync", &data_sync))
    return false;
  bool no_publish = false;
  if (!IsNullish(env, argv[6], &no_publish)) return false;
  int pub_fd = -1;
  Bytes pub;
  if (!no_publish) {
    if (!GetFd(env, argv[6], &pub_fd) || !GetBytes(env, argv[7], "publish", &pub)) return false;
    if (!data_sync) return ThrowType(env, "fastwal native: publish needs dataSync");
    if (pub.len == 0 || pub.len > Job::kMaxPublish) return ThrowType(env, "fastwal native: publish must be 1 to 64 bytes");
  }
  Job* job = new Job(data_sync ? Job::kWriteThenDataSync : Job::kWrite);
  job->io = a;
  if (!no_publish) job->SetPublish(pub_fd, pub.data, pub.len);
  return Job::Start(env, job, argv[1], result);
}

// fdatasync(fd) -> Promise<void>
bool JsFdatasync(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[1];
  int fd = -1;
  if (!Args(env, info, argv) || !GetFd(env, argv[0], &fd)) return false;
  Job* job = new Job(Job::kDataSync);
  job->io.fd = fd;
  return Job::Start(env, job, nullptr, result);
}

// zeroFill(fd, offset, length) -> Promise<void>
bool JsZeroFill(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[3];
  int fd = -1;
  uint64_t off = 0, len = 0;
  if (!Args(env, info, argv) || !ZeroArgs(env, argv, &fd, &off, &len)) return false;
  Job* job = new Job(Job::kZeroFill);
  job->io.fd = fd;
  job->io.position = off;
  job->zero_len = len;
  return Job::Start(env, job, nullptr, result);
}

// readScan(fd, buf, position) -> Promise<[bytes, status, stop, need, index]>
bool JsReadScan(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[3];
  IoArgs a;
  if (!Args(env, info, argv) || !ReadArgs(env, argv, &a)) return false;
  Job* job = new Job(Job::kReadScan);
  job->io = a;
  return Job::Start(env, job, argv[1], result);
}

// findNonZero(fd, position) -> Promise<[offset of the first non-zero byte or -1, end]>
bool JsFindNonZero(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[2];
  IoArgs a;
  if (!Args(env, info, argv) || !NonZeroArgs(env, argv, &a.fd, &a.position)) return false;
  Job* job = new Job(Job::kFindNonZero);
  job->io = a;
  return Job::Start(env, job, nullptr, result);
}

// tryLock(fd) -> true if taken, false if another holder has it; throws on other errors.
bool JsTryLock(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[1];
  int fd = -1;
  if (!Args(env, info, argv) || !GetFd(env, argv[0], &fd)) return false;
  const IoResult r = TryLock(fd);
  const bool held_elsewhere = r.err == EWOULDBLOCK || r.err == EAGAIN;
  if (r.err && !held_elsewhere) return ThrowIoError(env, r);
  FW_NAPI(env, napi_get_boolean, !held_elsewhere, result);
  return true;
}

// unlock(fd)
bool JsUnlock(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[1];
  int fd = -1;
  if (!Args(env, info, argv) || !GetFd(env, argv[0], &fd)) return false;
  const IoResult r = Unlock(fd);
  if (r.err) return ThrowIoError(env, r);
  return true;
}

// bindAbstract(name: Buffer) -> the bound socket's fd, or -1 if another socket holds the
// name; throws on other errors (ENOSYS off Linux).
bool JsBindAbstract(napi_env env, napi_callback_info info, napi_value* result) {
  napi_value argv[1];
  if (!Args(env, info, argv)) return false;
  Bytes name;
  if (!GetBytes(env, argv[0], "bindAbstract: name", &name)) return false;
  int fd = -1;
  const IoResult r = BindAbstract(reinterpret_cast<const char*>(name.data), name.len, &fd);
  if (r.err == EADDRINUSE) fd = -1;
  else if (r.err) return ThrowIoError(env, r);
  FW_NAPI(env, napi_create_int32, fd, result);
  return true;
}

// --- Registration -----------------------------------------------------------------------

// exports.format: the on-disk format constants this addon was compiled with (codec.h).
// lib/native-addon.ts compares each with lib/format.ts when it loads the addon and refuses
// an addon built from a different format, so the two can never silently disagree.
bool ExportFormat(napi_env env, napi_value exports) {
  struct Constant {
    const char* name;
    double value;
  };
  static const Constant kConstants[] = {
      {"recordHeaderSize", static_cast<double>(kRecordHeaderSize)},
      {"maxPayload", static_cast<double>(kMaxPayload)},
      {"maxLsn", static_cast<double>(kMaxLsn)},
      {"typePut", kPut},
      {"typeDel", kDel},
      {"typeBegin", kBegin},
      {"typeCommit", kCommit},
      {"typeCheckpoint", kCheckpoint},
      {"flagBatch", kFlagBatch},
      {"ixStride", static_cast<double>(kIndexStride)},
      {"ixPos", kIxPos},
      {"ixLength", kIxLength},
      {"ixType", kIxType},
      {"ixAux", kIxAux},
      {"ixLsn", kIxLsn},
      {"ixMark", kIxMark},
      {"scanEnd", kScanEnd},
      {"scanNeedMore", kScanNeedMore},
      {"scanBad", kScanBad},
      {"scanZero", kScanZero},
  };
  napi_value format;
  FW_NAPI(env, napi_create_object, &format);
  for (const Constant& c : kConstants) {
    napi_value v;
    if (!MakeDouble(env, c.value, &v)) return false;
    FW_NAPI(env, napi_set_named_property, format, c.name, v);
  }
  FW_NAPI(env, napi_object_freeze, format);
  FW_NAPI(env, napi_set_named_property, exports, "format", format);
  return true;
}

bool Register(napi_env env, napi_value exports) {
  struct Export {
    const char* name;
    napi_callback cb;
  };
  static const Export kExports[] = {
      {"crc32c", Entry<JsCrc32c>},
      {"crc32cImplementation", Entry<JsCrc32cImplementation>},
      {"encodeRecord", Entry<JsEncodeRecord>},
      {"encodeBatch", Entry<JsEncodeBatch>},
      {"encodeCheckpoint", Entry<JsEncodeCheckpoint>},
      {"scan", Entry<JsScan>},
      {"findNextRecord", Entry<JsFindNextRecord>},
      {"writeBlocking", Entry<JsWriteBlocking>},
      {"fdatasyncBlocking", Entry<JsFdatasyncBlocking>},
      {"zeroFillBlocking", Entry<JsZeroFillBlocking>},
      {"readScanBlocking", Entry<JsReadScanBlocking>},
      {"write", Entry<JsWrite>},
      {"fdatasync", Entry<JsFdatasync>},
      {"zeroFill", Entry<JsZeroFill>},
      {"readScan", Entry<JsReadScan>},
      {"findNonZero", Entry<JsFindNonZero>},
      {"findNonZeroBlocking", Entry<JsFindNonZeroBlocking>},
      {"tryLock", Entry<JsTryLock>},
      {"unlock", Entry<JsUnlock>},
      {"bindAbstract", Entry<JsBindAbstract>},
  };
  for (const Export& e : kExports) {
    napi_value fn;
    FW_NAPI(env, napi_create_function, e.name, NAPI_AUTO_LENGTH, e.cb, nullptr, &fn);
    FW_NAPI(env, napi_set_named_property, exports, e.name, fn);
  }
  return ExportFormat(env, exports);
}

}  // namespace
}  // namespace fastwal

// node-addon-api registers the module; everything it exports is raw N-API (Register).
// A failed Register leaves its exception pending, which fails the require().
static Napi::Object InitFastwal(Napi::Env env, Napi::Object exports) {
  static_cast<void>(fastwal::Register(env, exports));
  return exports;
}

NODE_API_MODULE(fastwal, InitFastwal)
