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

Napi::Value Crc(const Napi::CallbackInfo& info) {
  uint8_t* data;
  size_t len;
  uint64_t seed = 0;
  if (!GetBytes(info[0], "data", &data, &len)) return info.Env().Undefined();
  if (info.Length() > 1 && !info[1].IsUndefined() && !GetUint(info[1], "seed", 4294967295.0, &seed))
    return info.Env().Undefined();
  return Napi::Number::New(info.Env(), Crc32c(static_cast<uint32_t>(seed), data, len));
}

Napi::Value CrcImplementation(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Crc32cImplementation());
}

// --- Encoding -----------------------------------------------------------------------

struct Slice {
  uint8_t* data = nullptr;
  size_t len = 0;
};

bool OptionalBytes(const Napi::Value& v, const char* name, Slice* s) {
  if (v.IsUndefined() || v.IsNull()) return true;
  return GetBytes(v, name, &s->data, &s->len);
}

bool RoomFor(Napi::Env env, size_t cap, uint64_t pos, uint64_t need) {
  if (pos > cap || need > cap - pos) return Fail(env, "output buffer too small");
  return true;
}

// encodeRecord(out, pos, type, lsn, mark, key, value?) -> end position. Standalone PUT/DEL.
Napi::Value EncodeOne(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* out;
  size_t cap;
  uint64_t pos, type, lsn, mark;
  Slice key, value;
  if (!GetBytes(info[0], "out", &out, &cap) || !GetUint(info[1], "pos", kMaxSafe, &pos) ||
      !GetUint(info[2], "type", 255, &type) || !GetUint(info[3], "lsn", kMaxSafe, &lsn) ||
      !GetUint(info[4], "mark", kMaxSafe, &mark) || !GetBytes(info[5], "key", &key.data, &key.len) ||
      !OptionalBytes(info[6], "value", &value))
    return env.Undefined();
  if (type != kPut && type != kDel) return Fail(env, "type must be PUT or DEL"), env.Undefined();
  if (type == kDel && value.len) return Fail(env, "DEL has no value"), env.Undefined();
  if (lsn == 0 || mark > lsn) return Fail(env, "bad lsn/mark"), env.Undefined();
  if (key.len > kMaxPayload || value.len > kMaxPayload - key.len)
    return Fail(env, "record too large"), env.Undefined();
  const uint64_t need = kRecordHeaderSize + key.len + value.len;
  if (!RoomFor(env, cap, pos, need)) return env.Undefined();
  size_t n = EncodeRecord(out + pos, static_cast<uint8_t>(type), 0, static_cast<uint32_t>(key.len),
                          lsn, mark, key.data, key.len, value.data, value.len);
  return Napi::Number::New(env, static_cast<double>(pos + n));
}

// encodeBatch(out, pos, types, keys, values, first, mark) -> end position.
// Writes BEGIN, every operation (flagged as batch members) and COMMIT in one pass.
Napi::Value EncodeBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* out;
  size_t cap;
  uint8_t* types;
  size_t count;
  uint64_t pos, first, mark;
  if (!GetBytes(info[0], "out", &out, &cap) || !GetUint(info[1], "pos", kMaxSafe, &pos) ||
      !GetBytes(info[2], "types", &types, &count) || !GetUint(info[5], "first", kMaxSafe, &first) ||
      !GetUint(info[6], "mark", kMaxSafe, &mark))
    return env.Undefined();
  if (!info[3].IsArray() || !info[4].IsArray()) return Fail(env, "keys and values must be arrays"), env.Undefined();
  Napi::Array keys = info[3].As<Napi::Array>();
  Napi::Array values = info[4].As<Napi::Array>();
  if (count == 0 || count > 0xFFFFFFFFu || keys.Length() != count || values.Length() != count)
    return Fail(env, "batch arrays must have the same, non-zero length"), env.Undefined();
  if (first == 0 || first + count - 1 > static_cast<uint64_t>(kMaxSafe) || mark >= first)
    return Fail(env, "bad lsn/mark"), env.Undefined();

  std::vector<Slice> k(count), v(count);
  uint64_t need = 2 * kRecordHeaderSize + 8;
  for (uint32_t i = 0; i < count; ++i) {
    if (types[i] != kPut && types[i] != kDel) return Fail(env, "type must be PUT or DEL"), env.Undefined();
    if (!GetBytes(keys.Get(i), "key", &k[i].data, &k[i].len) ||
        !OptionalBytes(values.Get(i), "value", &v[i]))
      return env.Undefined();
    if (types[i] == kDel && v[i].len) return Fail(env, "DEL has no value"), env.Undefined();
    if (k[i].len > kMaxPayload || v[i].len > kMaxPayload - k[i].len)
      return Fail(env, "record too large"), env.Undefined();
    need += kRecordHeaderSize + k[i].len + v[i].len;
  }
  if (!RoomFor(env, cap, pos, need)) return env.Undefined();

  uint8_t* p = out + pos;
  const uint32_t n32 = static_cast<uint32_t>(count);
  p += EncodeRecord(p, kBegin, 0, n32, first, mark, nullptr, 0, nullptr, 0);
  for (uint32_t i = 0; i < count; ++i)
    p += EncodeRecord(p, types[i], kFlagBatch, static_cast<uint32_t>(k[i].len), first + i, mark,
                      k[i].data, k[i].len, v[i].data, v[i].len);
  uint8_t begin_le[8];
  for (int b = 0; b < 8; ++b) begin_le[b] = static_cast<uint8_t>(first >> (8 * b));
  p += EncodeRecord(p, kCommit, 0, n32, first + count - 1, mark, begin_le, 8, nullptr, 0);
  return Napi::Number::New(env, static_cast<double>(p - out));
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, Crc, "crc32c"));
  exports.Set("crc32cImplementation", Napi::Function::New(env, CrcImplementation));
  exports.Set("encodeRecord", Napi::Function::New(env, EncodeOne, "encodeRecord"));
  exports.Set("encodeBatch", Napi::Function::New(env, EncodeBatch, "encodeBatch"));
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
