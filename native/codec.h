// Record encoding and chunk scanning for the fastwal on-disk format (docs/FORMAT.md).
// Pure functions over memory: no I/O, no N-API, so the fuzzer can drive them directly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastwal {

constexpr size_t kRecordHeaderSize = 32;
constexpr uint32_t kMaxPayload = 0x7FFFFFFFu - kRecordHeaderSize;
// LSNs and marks are JavaScript safe integers: a record's LSN is in [1, kMaxLsn].
constexpr uint64_t kMaxLsn = (uint64_t{1} << 53) - 1;

enum RecordType : uint8_t { kPut = 1, kDel = 2, kBegin = 3, kCommit = 4, kCheckpoint = 5 };
constexpr uint8_t kFlagBatch = 1;  // a PUT/DEL that belongs to the enclosing BEGIN..COMMIT

// COMMIT and CHECKPOINT carry one little-endian u64 as their payload: COMMIT the LSN of
// its batch's BEGIN, CHECKPOINT the checkpointed LSN.
constexpr size_t kLsnPayloadSize = 8;
constexpr size_t kCheckpointRecordSize = kRecordHeaderSize + kLsnPayloadSize;

// Writes one record (header + payload a||b) at dst, which must hold
// kRecordHeaderSize + alen + blen bytes. Returns the bytes written.
size_t EncodeRecord(uint8_t* dst, uint8_t type, uint8_t flags, uint32_t aux, uint64_t lsn,
                    uint64_t mark, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen);

// One user operation: a PUT (key, value) or a DEL (key, no value). Its record has the key
// length as aux and key||value as payload.
struct Op {
  uint8_t type = kPut;
  const uint8_t* key = nullptr;  // may be null when key_len == 0
  size_t key_len = 0;
  const uint8_t* value = nullptr;  // may be null when value_len == 0
  size_t value_len = 0;
};

// What the encoders accept. Each check returns nullptr when its arguments can be encoded,
// else what is wrong (a phrase for an error message). The encoders below do not check:
// callers run these first.
//
// An operation: type PUT or DEL, no value for DEL, key + value at most kMaxPayload bytes.
const char* CheckOp(uint8_t type, uint64_t key_len, uint64_t value_len);
// A standalone PUT/DEL: the operation checks, then 1 <= lsn <= kMaxLsn and mark <= lsn.
const char* CheckRecord(uint8_t type, uint64_t key_len, uint64_t value_len, uint64_t lsn,
                        uint64_t mark);
// A batch of n operations at LSNs first .. first + n - 1: 1 <= n <= 2^32 - 1 (the count is
// stored in a u32), every LSN in [1, kMaxLsn], and mark < first (a batch's records cannot
// be durable before the batch is written).
const char* CheckBatch(uint64_t n, uint64_t first, uint64_t mark);
// A CHECKPOINT record: 1 <= lsn <= kMaxLsn, mark <= lsn, checkpoint_lsn <= kMaxLsn.
const char* CheckCheckpoint(uint64_t lsn, uint64_t mark, uint64_t checkpoint_lsn);

// Bytes of the record for op.
inline uint64_t OpRecordSize(const Op& op) {
  return kRecordHeaderSize + static_cast<uint64_t>(op.key_len) + static_cast<uint64_t>(op.value_len);
}

// Writes op as a standalone record (flags 0) at dst, which must hold OpRecordSize(op)
// bytes. Returns the bytes written.
size_t EncodeOp(uint8_t* dst, const Op& op, uint64_t lsn, uint64_t mark);

// A batch is written as one run of records:
//   BEGIN   lsn first,         aux n, no payload
//   op i    lsn first + i,     flags kFlagBatch, aux key length, payload key||value
//   COMMIT  lsn first + n - 1, aux n, payload first (the BEGIN's LSN) as a u64
// every record with the same mark. BEGIN and the first op share an LSN, as do COMMIT and
// the last op: a batch of n operations uses n LSNs.
//
// Bytes of a batch of n operations whose keys and values are all empty: a lower bound for
// any batch of n, usable before the operations themselves are known.
constexpr uint64_t MinBatchSize(uint64_t n) {
  return (n + 2) * kRecordHeaderSize + kLsnPayloadSize;
}
// Bytes EncodeBatch writes for ops[0, n). Cannot overflow for n < 2^32 operations that
// pass CheckOp.
uint64_t BatchSize(const Op* ops, size_t n);
// Writes the batch at dst, which must hold BatchSize(ops, n) bytes, after CheckBatch and
// CheckOp passed. Returns the bytes written.
size_t EncodeBatch(uint8_t* dst, const Op* ops, size_t n, uint64_t first, uint64_t mark);

// Writes a CHECKPOINT record (aux 0, payload checkpoint_lsn as a u64) at dst, which must
// hold kCheckpointRecordSize bytes. Returns the bytes written.
size_t EncodeCheckpoint(uint8_t* dst, uint64_t lsn, uint64_t mark, uint64_t checkpoint_lsn);

// Index fields per record, as doubles so TypeScript reads them from one Float64Array.
// LSNs are below 2^53 (the facade enforces it), so doubles hold them exactly.
constexpr size_t kIndexStride = 6;
enum IndexField { kIxPos = 0, kIxLength, kIxType, kIxAux, kIxLsn, kIxMark };

enum ScanStatus : int {
  kScanEnd = 0,       // every byte up to `end` was consumed by whole records
  kScanNeedMore = 1,  // a record starts at stop but extends past end: needs `need` bytes
  kScanBad = 2,       // the bytes at stop are not a valid record
  kScanZero = 3,      // the bytes at stop are zero (a preallocated tail, or a hole)
  kScanLimit = 4,     // max_records reached; resume at stop
};

struct ScanResult {
  int status;
  size_t stop;   // offset where scanning stopped
  size_t need;   // with kScanNeedMore: bytes needed from stop for the whole record
  size_t count;  // records appended to the index
};

// Validates records in buf[start, end) and appends kIndexStride values per record to index.
// Never reads outside [buf, buf + end). Untrusted input is fine.
ScanResult ScanRecords(const uint8_t* buf, size_t start, size_t end, size_t max_records,
                       std::vector<double>* index);

// Checks whether a structurally valid, checksum-correct record starts at buf[pos].
// Returns its total size, 0 if not (or if it would extend past end).
size_t ValidRecordAt(const uint8_t* buf, size_t pos, size_t end);

// First offset in [start, end) where a valid record starts, or end if none: used by
// recovery to look past damage for records that prove it was durable.
size_t FindNextRecord(const uint8_t* buf, size_t start, size_t end);

}  // namespace fastwal
