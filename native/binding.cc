// N-API surface of the native backend. Thin on purpose: TypeScript validates user input
// and owns all policy; this layer checks its own arguments (it never trusts JS), does the
// encoding, CRC, write, sync and read+scan, and runs blocking calls off the event loop
// for the promise-returning functions.
#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "codec.h"
#include "crc32c.h"
#include "file_io.h"

namespace fastwal {
namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

bool Fail(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, "fastwal native: " + msg).ThrowAsJavaScriptException();
  return false;
}

bool GetBytes(const Napi::Value& v, const char* name, uint8_t** data, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    return Fail(v.Env(), std::string(name) + " must be a Uint8Array");
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  *data = a.Data();
  *len = a.ByteLength();
  return true;
}

bool GetUint(const Napi::Value& v, const char* name, double max, uint64_t* out) {
  if (!v.IsNumber()) return Fail(v.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > max || std::floor(d) != d)
    return Fail(v.Env(), std::string(name) + " must be an integer in range");
  *out = static_cast<uint64_t>(d);
  return true;
}

bool GetFd(const Napi::Value& v, int* fd) {
  uint64_t x;
  if (!GetUint(v, "fd", 2147483647.0, &x)) return false;
  *fd = static_cast<int>(x);
  return true;
}

Napi::Error IoError(Napi::Env env, const IoResult& r) {
  std::string msg = std::string(r.syscall ? r.syscall : "io") + " failed: " + std::strerror(r.err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, -r.err));  // negative, as in Node's own errors
  e.Set("syscall", Napi::String::New(env, r.syscall ? r.syscall : "io"));
  return e;
}

Napi::Value ThrowIo(Napi::Env env, const IoResult& r) {
  IoError(env, r).ThrowAsJavaScriptException();
  return env.Undefined();
}

// --- CRC --------------------------------------------------------------------------

Napi::Value CrcImplementation(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Crc32cImplementation());
}

// --- Encoding -----------------------------------------------------------------------

struct Slice {
  uint8_t* data = nullptr;
  size_t len = 0;
};

bool RoomFor(Napi::Env env, size_t cap, uint64_t pos, uint64_t need) {
  if (pos > cap || need > cap - pos) return Fail(env, "output buffer too small");
  return true;
}

// encodeCheckpoint(out, pos, lsn, mark, checkpointLsn) -> end position.
Napi::Value EncodeCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* out;
  size_t cap;
  uint64_t pos, lsn, mark, cp;
  if (!GetBytes(info[0], "out", &out, &cap) || !GetUint(info[1], "pos", kMaxSafe, &pos) ||
      !GetUint(info[2], "lsn", kMaxSafe, &lsn) || !GetUint(info[3], "mark", kMaxSafe, &mark) ||
      !GetUint(info[4], "checkpointLsn", kMaxSafe, &cp))
    return env.Undefined();
  if (lsn == 0 || mark > lsn) return Fail(env, "bad lsn/mark"), env.Undefined();
  if (!RoomFor(env, cap, pos, kRecordHeaderSize + 8)) return env.Undefined();
  uint8_t le[8];
  for (int b = 0; b < 8; ++b) le[b] = static_cast<uint8_t>(cp >> (8 * b));
  size_t n = EncodeRecord(out + pos, kCheckpoint, 0, 0, lsn, mark, le, 8, nullptr, 0);
  return Napi::Number::New(env, static_cast<double>(pos + n));
}

// --- Scanning -----------------------------------------------------------------------

Napi::Value ScanOutput(Napi::Env env, double bytes, const ScanResult& r, const std::vector<double>& ix) {
  Napi::Float64Array index = Napi::Float64Array::New(env, ix.size());
  if (!ix.empty()) std::memcpy(index.Data(), ix.data(), ix.size() * sizeof(double));
  Napi::Array out = Napi::Array::New(env, 5);
  out.Set(uint32_t{0}, Napi::Number::New(env, bytes));
  out.Set(uint32_t{1}, Napi::Number::New(env, r.status));
  out.Set(uint32_t{2}, Napi::Number::New(env, static_cast<double>(r.stop)));
  out.Set(uint32_t{3}, Napi::Number::New(env, static_cast<double>(r.need)));
  out.Set(uint32_t{4}, index);
  return out;
}

bool ScanArgs(const Napi::CallbackInfo& info, uint8_t** buf, size_t* len, uint64_t* start, uint64_t* end) {
  if (!GetBytes(info[0], "buf", buf, len) || !GetUint(info[1], "start", kMaxSafe, start) ||
      !GetUint(info[2], "end", kMaxSafe, end))
    return false;
  if (*start > *end || *end > *len) return Fail(info.Env(), "scan range outside buffer");
  return true;
}

// scan(buf, start, end) -> [end, status, stop, need, index]
Napi::Value Scan(const Napi::CallbackInfo& info) {
  uint8_t* buf;
  size_t len;
  uint64_t start, end;
  if (!ScanArgs(info, &buf, &len, &start, &end)) return info.Env().Undefined();
  std::vector<double> ix;
  ScanResult r = ScanRecords(buf, start, end, SIZE_MAX, &ix);
  return ScanOutput(info.Env(), static_cast<double>(end), r, ix);
}

// findNextRecord(buf, start, end) -> offset of the next valid record, or end.
Napi::Value FindNext(const Napi::CallbackInfo& info) {
  uint8_t* buf;
  size_t len;
  uint64_t start, end;
  if (!ScanArgs(info, &buf, &len, &start, &end)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), static_cast<double>(FindNextRecord(buf, start, end)));
}

// --- File I/O -------------------------------------------------------------------------

struct IoArgs {
  int fd = -1;
  uint8_t* data = nullptr;
  size_t len = 0;
  uint64_t position = 0;
};

// (fd, buf, off, len, position)
bool WriteArgs(const Napi::CallbackInfo& info, IoArgs* a) {
  uint8_t* buf;
  size_t cap;
  uint64_t off, len;
  if (!GetFd(info[0], &a->fd) || !GetBytes(info[1], "buf", &buf, &cap) ||
      !GetUint(info[2], "offset", kMaxSafe, &off) || !GetUint(info[3], "length", kMaxSafe, &len) ||
      !GetUint(info[4], "position", kMaxSafe, &a->position))
    return false;
  if (off > cap || len > cap - off) return Fail(info.Env(), "write range outside buffer");
  a->data = buf + off;
  a->len = static_cast<size_t>(len);
  return true;
}

Napi::Value WriteSync(const Napi::CallbackInfo& info) {
  IoArgs a;
  if (!WriteArgs(info, &a)) return info.Env().Undefined();
  IoResult r = WriteAll(a.fd, a.data, a.len, a.position);
  if (r.err) return ThrowIo(info.Env(), r);
  return info.Env().Undefined();
}

Napi::Value SyncSync(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info[0], &fd)) return info.Env().Undefined();
  IoResult r = DataSync(fd);
  if (r.err) return ThrowIo(info.Env(), r);
  return info.Env().Undefined();
}

Napi::Value ZeroFillSync(const Napi::CallbackInfo& info) {
  int fd;
  uint64_t off, len;
  if (!GetFd(info[0], &fd) || !GetUint(info[1], "offset", kMaxSafe, &off) ||
      !GetUint(info[2], "length", kMaxSafe, &len))
    return info.Env().Undefined();
  IoResult r = ZeroFill(fd, off, len);
  if (r.err) return ThrowIo(info.Env(), r);
  return info.Env().Undefined();
}

// One worker type for every async call: it holds the JS buffer alive, runs one job on the
// libuv pool and settles a promise. Only plain C++ data crosses to the pool thread.
class Job : public Napi::AsyncWorker {
 public:
  enum Kind { kWrite, kWriteSync, kSync, kZero, kReadScan };

  Job(Napi::Env env, Kind kind) : Napi::AsyncWorker(env, "fastwal:io"), kind_(kind), deferred_(env) {}

  Napi::Promise Start(const Napi::Value& keep_alive) {
    if (keep_alive.IsObject()) buffer_ref_ = Napi::Persistent(keep_alive.As<Napi::Object>());
    Queue();
    return deferred_.Promise();
  }

  IoArgs io;
  uint64_t zero_len = 0;

 protected:
  void Execute() override {
    switch (kind_) {
      case kWrite:
      case kWriteSync:
        result_ = WriteAll(io.fd, io.data, io.len, io.position);
        if (!result_.err && kind_ == kWriteSync) result_ = DataSync(io.fd);
        break;
      case kSync:
        result_ = DataSync(io.fd);
        break;
      case kZero:
        result_ = ZeroFill(io.fd, io.position, zero_len);
        break;
      case kReadScan:
        result_ = ReadFull(io.fd, io.data, io.len, io.position);
        if (!result_.err) scan_ = ScanRecords(io.data, 0, result_.bytes, SIZE_MAX, &index_);
        break;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_.err) {
      deferred_.Reject(IoError(env, result_).Value());
    } else if (kind_ == kReadScan) {
      deferred_.Resolve(ScanOutput(env, static_cast<double>(result_.bytes), scan_, index_));
    } else {
      deferred_.Resolve(env.Undefined());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Kind kind_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference buffer_ref_;
  IoResult result_{0, nullptr, 0};
  ScanResult scan_{0, 0, 0, 0};
  std::vector<double> index_;
};

// write(fd, buf, off, len, position, sync) -> Promise<void>: one pool hop for write+fdatasync.
Napi::Value Write(const Napi::CallbackInfo& info) {
  IoArgs a;
  if (!WriteArgs(info, &a)) return info.Env().Undefined();
  bool sync = info[5].ToBoolean().Value();
  Job* job = new Job(info.Env(), sync ? Job::kWriteSync : Job::kWrite);
  job->io = a;
  return job->Start(info[1]);
}

Napi::Value Sync(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info[0], &fd)) return info.Env().Undefined();
  Job* job = new Job(info.Env(), Job::kSync);
  job->io.fd = fd;
  return job->Start(info.Env().Undefined());
}

Napi::Value ZeroFillAsync(const Napi::CallbackInfo& info) {
  int fd;
  uint64_t off, len;
  if (!GetFd(info[0], &fd) || !GetUint(info[1], "offset", kMaxSafe, &off) ||
      !GetUint(info[2], "length", kMaxSafe, &len))
    return info.Env().Undefined();
  Job* job = new Job(info.Env(), Job::kZero);
  job->io.fd = fd;
  job->io.position = off;
  job->zero_len = len;
  return job->Start(info.Env().Undefined());
}

// (fd, buf, position): reads up to buf.length bytes at position into buf, scans them.
bool ReadArgs(const Napi::CallbackInfo& info, IoArgs* a) {
  return GetFd(info[0], &a->fd) && GetBytes(info[1], "buf", &a->data, &a->len) &&
         GetUint(info[2], "position", kMaxSafe, &a->position);
}

Napi::Value ReadScanSync(const Napi::CallbackInfo& info) {
  IoArgs a;
  if (!ReadArgs(info, &a)) return info.Env().Undefined();
  IoResult r = ReadFull(a.fd, a.data, a.len, a.position);
  if (r.err) return ThrowIo(info.Env(), r);
  std::vector<double> ix;
  ScanResult s = ScanRecords(a.data, 0, r.bytes, SIZE_MAX, &ix);
  return ScanOutput(info.Env(), static_cast<double>(r.bytes), s, ix);
}

Napi::Value ReadScan(const Napi::CallbackInfo& info) {
  IoArgs a;
  if (!ReadArgs(info, &a)) return info.Env().Undefined();
  Job* job = new Job(info.Env(), Job::kReadScan);
  job->io = a;
  return job->Start(info[1]);
}

// tryLock(fd) -> true if taken, false if another holder has it; throws on other errors.
Napi::Value TryLockFd(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info[0], &fd)) return info.Env().Undefined();
  IoResult r = TryLock(fd);
  if (r.err == EWOULDBLOCK || r.err == EAGAIN) return Napi::Boolean::New(info.Env(), false);
  if (r.err) return ThrowIo(info.Env(), r);
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value UnlockFd(const Napi::CallbackInfo& info) {
  int fd;
  if (!GetFd(info[0], &fd)) return info.Env().Undefined();
  IoResult r = Unlock(fd);
  if (r.err) return ThrowIo(info.Env(), r);
  return info.Env().Undefined();
}

// --- Hot paths on the raw C API --------------------------------------------------------
// crc32c, encodeRecord and encodeBatch run once per append or batch. node-addon-api's
// CallbackInfo heap-allocates for more than six arguments and its typed-array accessors
// make several N-API calls per buffer; here one napi_get_typedarray_info does it all.

napi_value RawThrow(napi_env env, const char* msg) {
  napi_throw_type_error(env, nullptr, msg);
  return nullptr;
}

bool RawBytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  bool is_typed = false;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return false;
  napi_typedarray_type type;
  void* p = nullptr;
  size_t n = 0;
  if (napi_get_typedarray_info(env, v, &type, &n, &p, nullptr, nullptr) != napi_ok || type != napi_uint8_array)
    return false;
  *data = static_cast<uint8_t*>(p);
  *len = n;
  return true;
}

bool RawOptionalBytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_undefined || t == napi_null) {
    *data = nullptr;
    *len = 0;
    return true;
  }
  return RawBytes(env, v, data, len);
}

bool RawUint(napi_env env, napi_value v, double max, uint64_t* out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return false;
  if (!(d >= 0) || d > max || std::floor(d) != d) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

napi_value RawNumber(napi_env env, double v) {
  napi_value out = nullptr;
  napi_create_double(env, v, &out);
  return out;
}

// crc32c(data, seed?)
napi_value RawCrc(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  uint8_t* data;
  size_t len;
  uint64_t seed = 0;
  if (argc < 1 || !RawBytes(env, argv[0], &data, &len)) return RawThrow(env, "fastwal native: data must be a Uint8Array");
  if (argc > 1) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_undefined && !RawUint(env, argv[1], 4294967295.0, &seed))
      return RawThrow(env, "fastwal native: seed must be an integer in range");
  }
  napi_value out = nullptr;
  napi_create_uint32(env, Crc32c(static_cast<uint32_t>(seed), data, len), &out);
  return out;
}

// encodeRecord(out, pos, type, lsn, mark, key, value?) -> end position. Standalone PUT/DEL.
napi_value RawEncodeOne(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 6) return RawThrow(env, "fastwal native: encodeRecord needs 6 or 7 arguments");
  uint8_t *out, *key, *value = nullptr;
  size_t cap, klen, vlen = 0;
  uint64_t pos, type, lsn, mark;
  if (!RawBytes(env, argv[0], &out, &cap)) return RawThrow(env, "fastwal native: out must be a Uint8Array");
  if (!RawUint(env, argv[1], kMaxSafe, &pos) || !RawUint(env, argv[2], 255, &type) ||
      !RawUint(env, argv[3], kMaxSafe, &lsn) || !RawUint(env, argv[4], kMaxSafe, &mark))
    return RawThrow(env, "fastwal native: pos, type, lsn and mark must be integers in range");
  if (!RawBytes(env, argv[5], &key, &klen)) return RawThrow(env, "fastwal native: key must be a Uint8Array");
  if (argc > 6 && !RawOptionalBytes(env, argv[6], &value, &vlen))
    return RawThrow(env, "fastwal native: value must be a Uint8Array");
  if (type != kPut && type != kDel) return RawThrow(env, "fastwal native: type must be PUT or DEL");
  if (type == kDel && vlen) return RawThrow(env, "fastwal native: DEL has no value");
  if (lsn == 0 || mark > lsn) return RawThrow(env, "fastwal native: bad lsn/mark");
  if (klen > kMaxPayload || vlen > kMaxPayload - klen) return RawThrow(env, "fastwal native: record too large");
  const uint64_t need = kRecordHeaderSize + klen + vlen;
  if (pos > cap || need > cap - pos) return RawThrow(env, "fastwal native: output buffer too small");
  size_t n = EncodeRecord(out + pos, static_cast<uint8_t>(type), 0, static_cast<uint32_t>(klen), lsn, mark,
                          key, klen, value, vlen);
  return RawNumber(env, static_cast<double>(pos + n));
}

// encodeBatch(out, pos, types, keys, values, first, mark) -> end position.
// Writes BEGIN, every operation (flagged as batch members) and COMMIT in one pass.
napi_value RawEncodeBatch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  if (argc < 7) return RawThrow(env, "fastwal native: encodeBatch needs 7 arguments");
  uint8_t *out, *types;
  size_t cap, count;
  uint64_t pos, first, mark;
  if (!RawBytes(env, argv[0], &out, &cap) || !RawBytes(env, argv[2], &types, &count))
    return RawThrow(env, "fastwal native: out and types must be Uint8Arrays");
  if (!RawUint(env, argv[1], kMaxSafe, &pos) || !RawUint(env, argv[5], kMaxSafe, &first) ||
      !RawUint(env, argv[6], kMaxSafe, &mark))
    return RawThrow(env, "fastwal native: pos, first and mark must be integers in range");
  bool ka = false, va = false;
  napi_is_array(env, argv[3], &ka);
  napi_is_array(env, argv[4], &va);
  if (!ka || !va) return RawThrow(env, "fastwal native: keys and values must be arrays");
  uint32_t nk = 0, nv = 0;
  napi_get_array_length(env, argv[3], &nk);
  napi_get_array_length(env, argv[4], &nv);
  if (count == 0 || count > 0xFFFFFFFFu || nk != count || nv != count)
    return RawThrow(env, "fastwal native: batch arrays must have the same, non-zero length");
  if (first == 0 || first + count - 1 > static_cast<uint64_t>(kMaxSafe) || mark >= first)
    return RawThrow(env, "fastwal native: bad lsn/mark");

  std::vector<Slice> k(count), v(count);
  uint64_t need = 2 * kRecordHeaderSize + 8;
  for (uint32_t i = 0; i < count; ++i) {
    if (types[i] != kPut && types[i] != kDel) return RawThrow(env, "fastwal native: type must be PUT or DEL");
    napi_value kv, vv;
    if (napi_get_element(env, argv[3], i, &kv) != napi_ok || napi_get_element(env, argv[4], i, &vv) != napi_ok)
      return nullptr;
    if (!RawBytes(env, kv, &k[i].data, &k[i].len)) return RawThrow(env, "fastwal native: key must be a Uint8Array");
    if (!RawOptionalBytes(env, vv, &v[i].data, &v[i].len))
      return RawThrow(env, "fastwal native: value must be a Uint8Array");
    if (types[i] == kDel && v[i].len) return RawThrow(env, "fastwal native: DEL has no value");
    if (k[i].len > kMaxPayload || v[i].len > kMaxPayload - k[i].len)
      return RawThrow(env, "fastwal native: record too large");
    need += kRecordHeaderSize + k[i].len + v[i].len;
  }
  if (pos > cap || need > cap - pos) return RawThrow(env, "fastwal native: output buffer too small");

  uint8_t* p = out + pos;
  const uint32_t n32 = static_cast<uint32_t>(count);
  p += EncodeRecord(p, kBegin, 0, n32, first, mark, nullptr, 0, nullptr, 0);
  for (uint32_t i = 0; i < count; ++i)
    p += EncodeRecord(p, types[i], kFlagBatch, static_cast<uint32_t>(k[i].len), first + i, mark, k[i].data,
                      k[i].len, v[i].data, v[i].len);
  uint8_t begin_le[8];
  for (int b = 0; b < 8; ++b) begin_le[b] = static_cast<uint8_t>(first >> (8 * b));
  p += EncodeRecord(p, kCommit, 0, n32, first + count - 1, mark, begin_le, 8, nullptr, 0);
  return RawNumber(env, static_cast<double>(p - out));
}

void SetRaw(Napi::Env env, Napi::Object exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  exports.Set(name, Napi::Value(env, fn));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  SetRaw(env, exports, "crc32c", RawCrc);
  exports.Set("crc32cImplementation", Napi::Function::New(env, CrcImplementation));
  SetRaw(env, exports, "encodeRecord", RawEncodeOne);
  SetRaw(env, exports, "encodeBatch", RawEncodeBatch);
  exports.Set("encodeCheckpoint", Napi::Function::New(env, EncodeCheckpoint, "encodeCheckpoint"));
  exports.Set("scan", Napi::Function::New(env, Scan, "scan"));
  exports.Set("findNextRecord", Napi::Function::New(env, FindNext, "findNextRecord"));
  exports.Set("writeSync", Napi::Function::New(env, WriteSync, "writeSync"));
  exports.Set("syncSync", Napi::Function::New(env, SyncSync, "syncSync"));
  exports.Set("zeroFillSync", Napi::Function::New(env, ZeroFillSync, "zeroFillSync"));
  exports.Set("write", Napi::Function::New(env, Write, "write"));
  exports.Set("sync", Napi::Function::New(env, Sync, "sync"));
  exports.Set("zeroFill", Napi::Function::New(env, ZeroFillAsync, "zeroFill"));
  exports.Set("readScanSync", Napi::Function::New(env, ReadScanSync, "readScanSync"));
  exports.Set("readScan", Napi::Function::New(env, ReadScan, "readScan"));
  exports.Set("tryLock", Napi::Function::New(env, TryLockFd, "tryLock"));
  exports.Set("unlock", Napi::Function::New(env, UnlockFd, "unlock"));
  return exports;
}

}  // namespace
}  // namespace fastwal

static Napi::Object InitFastwal(Napi::Env env, Napi::Object exports) {
  return fastwal::Init(env, exports);
}

NODE_API_MODULE(fastwal, InitFastwal)
