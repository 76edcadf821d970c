// Record encoding and chunk scanning for the fastwal on-disk format (docs/FORMAT.md).
// Pure functions over memory: no I/O, no N-API, so the fuzzer can drive them directly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastwal {

constexpr size_t kRecordHeaderSize = 32;
constexpr uint32_t kMaxPayload = 0x7FFFFFFFu - kRecordHeaderSize;

enum RecordType : uint8_t { kPut = 1, kDel = 2, kBegin = 3, kCommit = 4, kCheckpoint = 5 };
constexpr uint8_t kFlagBatch = 1;  // a PUT/DEL that belongs to the enclosing BEGIN..COMMIT

// Writes one record (header + payload a||b) at dst, which must hold
// kRecordHeaderSize + alen + blen bytes. Returns the bytes written.
size_t EncodeRecord(uint8_t* dst, uint8_t type, uint8_t flags, uint32_t aux, uint64_t lsn,
                    uint64_t mark, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen);

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
