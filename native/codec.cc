#include "codec.h"

#include <cstring>

#include "crc32c.h"

namespace fastwal {
namespace {

inline void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Header {
  uint32_t crc, length, aux;
  uint8_t type, flags;
  uint64_t lsn, mark;
};

inline Header ParseHeader(const uint8_t* p) {
  Header h;
  h.crc = Get32(p);
  h.length = Get32(p + 4);
  h.type = p[8];
  h.flags = p[9];
  h.aux = Get32(p + 12);
  h.lsn = Get64(p + 16);
  h.mark = Get64(p + 24);
  return h;
}

// Field rules of docs/FORMAT.md "Record validity", checked before the CRC so that a
// random or zero header is rejected cheaply.
inline bool Plausible(const uint8_t* p, const Header& h) {
  if (p[10] != 0 || p[11] != 0) return false;
  if (h.lsn == 0 || h.lsn > kMaxLsn || h.mark > h.lsn) return false;
  if (h.length > kMaxPayload) return false;
  switch (h.type) {
    case kPut:
      return (h.flags & ~kFlagBatch) == 0 && h.aux <= h.length;
    case kDel:
      return (h.flags & ~kFlagBatch) == 0 && h.aux == h.length;
    case kBegin:
      return h.flags == 0 && h.length == 0 && h.aux >= 1;
    case kCommit:
      return h.flags == 0 && h.length == 8 && h.aux >= 1;
    case kCheckpoint:
      return h.flags == 0 && h.length == 8 && h.aux == 0;
    default:
      return false;
  }
}

inline bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

}  // namespace

size_t EncodeRecord(uint8_t* dst, uint8_t type, uint8_t flags, uint32_t aux, uint64_t lsn,
                    uint64_t mark, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  const size_t length = alen + blen;
  Put32(dst + 4, static_cast<uint32_t>(length));
  dst[8] = type;
  dst[9] = flags;
  dst[10] = 0;
  dst[11] = 0;
  Put32(dst + 12, aux);
  Put64(dst + 16, lsn);
  Put64(dst + 24, mark);
  if (alen) std::memcpy(dst + kRecordHeaderSize, a, alen);
  if (blen) std::memcpy(dst + kRecordHeaderSize + alen, b, blen);
  Put32(dst, Crc32c(0, dst + 4, kRecordHeaderSize - 4 + length));
  return kRecordHeaderSize + length;
}

const char* CheckOp(uint8_t type, uint64_t key_len, uint64_t value_len) {
  if (type != kPut && type != kDel) return "type must be PUT or DEL";
  if (type == kDel && value_len != 0) return "DEL has no value";
  if (key_len > kMaxPayload || value_len > kMaxPayload - key_len) return "record too large";
  return nullptr;
}

const char* CheckRecord(uint8_t type, uint64_t key_len, uint64_t value_len, uint64_t lsn,
                        uint64_t mark) {
  if (const char* bad = CheckOp(type, key_len, value_len)) return bad;
  if (lsn == 0 || lsn > kMaxLsn || mark > lsn) return "bad lsn/mark";
  return nullptr;
}

const char* CheckBatch(uint64_t n, uint64_t first, uint64_t mark) {
  if (n == 0 || n > 0xFFFFFFFFu) return "a batch holds 1 to 2^32 - 1 operations";
  // Written so that nothing overflows: first + n - 1 <= kMaxLsn.
  if (first == 0 || first > kMaxLsn || n - 1 > kMaxLsn - first || mark >= first) return "bad lsn/mark";
  return nullptr;
}

const char* CheckCheckpoint(uint64_t lsn, uint64_t mark, uint64_t checkpoint_lsn) {
  if (lsn == 0 || lsn > kMaxLsn || mark > lsn || checkpoint_lsn > kMaxLsn) return "bad lsn/mark";
  return nullptr;
}

size_t EncodeOp(uint8_t* dst, const Op& op, uint64_t lsn, uint64_t mark) {
  return EncodeRecord(dst, op.type, 0, static_cast<uint32_t>(op.key_len), lsn, mark, op.key, op.key_len, op.value,
                      op.value_len);
}

uint64_t BatchSize(const Op* ops, size_t n) {
  uint64_t size = MinBatchSize(n);
  for (size_t i = 0; i < n; ++i) size += static_cast<uint64_t>(ops[i].key_len) + ops[i].value_len;
  return size;
}

size_t EncodeBatch(uint8_t* dst, const Op* ops, size_t n, uint64_t first, uint64_t mark) {
  const uint32_t count = static_cast<uint32_t>(n);
  uint8_t* p = dst;
  p += EncodeRecord(p, kBegin, 0, count, first, mark, nullptr, 0, nullptr, 0);
  for (size_t i = 0; i < n; ++i) {
    const Op& op = ops[i];
    p += EncodeRecord(p, op.type, kFlagBatch, static_cast<uint32_t>(op.key_len), first + i, mark, op.key,
                      op.key_len, op.value, op.value_len);
  }
  uint8_t begin_lsn[kLsnPayloadSize];
  Put64(begin_lsn, first);
  p += EncodeRecord(p, kCommit, 0, count, first + n - 1, mark, begin_lsn, sizeof begin_lsn, nullptr, 0);
  return static_cast<size_t>(p - dst);
}

size_t EncodeCheckpoint(uint8_t* dst, uint64_t lsn, uint64_t mark, uint64_t checkpoint_lsn) {
  uint8_t payload[kLsnPayloadSize];
  Put64(payload, checkpoint_lsn);
  return EncodeRecord(dst, kCheckpoint, 0, 0, lsn, mark, payload, sizeof payload, nullptr, 0);
}

size_t ValidRecordAt(const uint8_t* buf, size_t pos, size_t end) {
  if (pos > end || end - pos < kRecordHeaderSize) return 0;
  const uint8_t* p = buf + pos;
  Header h = ParseHeader(p);
  if (!Plausible(p, h)) return 0;
  if (h.length > end - pos - kRecordHeaderSize) return 0;
  if (Crc32c(0, p + 4, kRecordHeaderSize - 4 + h.length) != h.crc) return 0;
  return kRecordHeaderSize + h.length;
}

ScanResult ScanRecords(const uint8_t* buf, size_t start, size_t end, size_t max_records,
                       std::vector<double>* index) {
  ScanResult r{kScanEnd, start, 0, 0};
  size_t pos = start;
  while (pos < end) {
    if (r.count >= max_records) {
      r.status = kScanLimit;
      break;
    }
    const size_t remaining = end - pos;
    const uint8_t* p = buf + pos;
    if (remaining < kRecordHeaderSize) {
      r.status = AllZero(p, remaining) ? kScanZero : kScanNeedMore;
      r.need = kRecordHeaderSize;
      break;
    }
    if (AllZero(p, kRecordHeaderSize)) {
      r.status = kScanZero;
      break;
    }
    Header h = ParseHeader(p);
    if (!Plausible(p, h)) {
      r.status = kScanBad;
      break;
    }
    const size_t total = kRecordHeaderSize + static_cast<size_t>(h.length);
    if (total > remaining) {
      r.status = kScanNeedMore;
      r.need = total;
      break;
    }
    if (Crc32c(0, p + 4, kRecordHeaderSize - 4 + h.length) != h.crc) {
      r.status = kScanBad;
      break;
    }
    index->push_back(static_cast<double>(pos));
    index->push_back(static_cast<double>(h.length));
    index->push_back(static_cast<double>(h.type | (h.flags << 8)));
    index->push_back(static_cast<double>(h.aux));
    index->push_back(static_cast<double>(h.lsn));
    index->push_back(static_cast<double>(h.mark));
    ++r.count;
    pos += total;
  }
  r.stop = pos;
  return r;
}

size_t FindNextRecord(const uint8_t* buf, size_t start, size_t end) {
  for (size_t pos = start; pos + kRecordHeaderSize <= end; ++pos) {
    if (buf[pos + 8] - 1u > 4u) continue;  // cheapest filter first: the type byte
    if (ValidRecordAt(buf, pos, end)) return pos;
  }
  return end;
}

}  // namespace fastwal
