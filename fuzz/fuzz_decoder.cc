// libFuzzer target for the native record codec (native/codec.cc: scanner and encoders)
// and CRC32C (native/crc32c.cc). Build and run with scripts/fuzz.sh.
//
// Every input is used five ways:
//   1. as an untrusted chunk: ScanRecords over the whole input and over a [start, end)
//      window with a max_records limit (all derived from the input's last bytes),
//      cross-checked against ValidRecordAt, FindNextRecord, EncodeRecord and each other;
//   2. as a recipe for records built with EncodeRecord (valid ones, arbitrary ones, a
//      damaged byte, a zero/garbage tail, a truncation) that the scanner must read back;
//   3. as data for Crc32c (hardware path when present) vs Crc32cPortable, whole and split;
//   4. (sometimes) stretched past 12 KiB so the 3-stream hardware CRC path runs;
//   5. as operations for EncodeBatch and EncodeCheckpoint, whose bytes must equal the same
//      records written one by one with EncodeRecord and scan back field for field; and as
//      arguments for the encoders' Check* functions, which must accept exactly what
//      encodes to valid records.
// Any violated invariant prints a message and aborts, which libFuzzer reports as a crash.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "../native/codec.h"
#include "../native/crc32c.h"

using namespace fastwal;

namespace {

[[noreturn]] void Fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "\nfuzz_decoder invariant violated at %s:%d: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}
#define CHECK(cond)                                \
  do {                                             \
    if (!(cond)) Fail(__FILE__, __LINE__, #cond);  \
  } while (0)

constexpr size_t kHdr = kRecordHeaderSize;
constexpr uint64_t kLsnLimit = uint64_t{1} << 53;

// An exact-size heap copy of buf[0, n): ASan then flags any read at or past buf + n,
// which is the "never reads outside [buf, buf + end)" contract of the codec.
struct Chunk {
  std::unique_ptr<uint8_t[]> mem;
  size_t size;
  Chunk(const uint8_t* src, size_t n) : mem(new uint8_t[n ? n : 1]), size(n) {
    if (n) std::memcpy(mem.get(), src, n);
  }
  uint8_t* data() { return mem.get(); }
};

uint32_t Le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t Le64(const uint8_t* p) { return uint64_t{Le32(p)} | uint64_t{Le32(p + 4)} << 32; }
uint32_t Le32Safe(const uint8_t* p, size_t n) {  // up to the first 4 bytes of p[0, n)
  uint32_t v = 0;
  for (size_t i = 0; i < 4 && i < n; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

// Reference statement of the record field rules, written from the format description
// (codec.h / FORMAT.md "Record validity"), independent of codec.cc's Plausible().
bool RefFieldsValid(uint8_t type, uint8_t flags, uint32_t aux, uint64_t length, uint64_t lsn,
                    uint64_t mark) {
  if (lsn == 0 || lsn >= kLsnLimit || mark > lsn || length > kMaxPayload) return false;
  const bool batch_flags_ok = flags == 0 || flags == kFlagBatch;
  if (type == kPut) return batch_flags_ok && aux <= length;
  if (type == kDel) return batch_flags_ok && aux == length;
  if (type == kBegin) return flags == 0 && length == 0 && aux >= 1;
  if (type == kCommit) return flags == 0 && length == 8 && aux >= 1;
  if (type == kCheckpoint) return flags == 0 && length == 8 && aux == 0;
  return false;
}

// One index entry, converted back from doubles (checking they are exact integers).
struct Entry {
  uint64_t pos, length, lsn, mark;
  uint32_t aux;
  uint8_t type, flags;
};

uint64_t ExactU64(double d) {
  CHECK(d >= 0 && d < 18446744073709551616.0);
  const uint64_t v = static_cast<uint64_t>(d);
  CHECK(static_cast<double>(v) == d);
  return v;
}

Entry GetEntry(const std::vector<double>& ix, size_t i) {
  const double* e = &ix[i * kIndexStride];
  Entry r;
  r.pos = ExactU64(e[kIxPos]);
  r.length = ExactU64(e[kIxLength]);
  const uint64_t tf = ExactU64(e[kIxType]);
  CHECK(tf <= 0xFFFF);
  r.type = static_cast<uint8_t>(tf & 0xFF);
  r.flags = static_cast<uint8_t>(tf >> 8);
  const uint64_t aux = ExactU64(e[kIxAux]);
  CHECK(aux <= 0xFFFFFFFFu);
  r.aux = static_cast<uint32_t>(aux);
  r.lsn = ExactU64(e[kIxLsn]);
  r.mark = ExactU64(e[kIxMark]);
  return r;
}

// Checks everything that must hold for one ScanRecords call over buf[start, end) with
// buf holding exactly `end` readable bytes. Returns the parsed entries.
std::vector<Entry> CheckScan(const uint8_t* buf, size_t start, size_t end, size_t max_records,
                             const ScanResult& r, const std::vector<double>& ix, size_t split) {
  CHECK(ix.size() == r.count * kIndexStride);
  CHECK(r.count <= max_records);
  CHECK(r.stop >= start);
  CHECK(r.stop <= end);
  std::vector<Entry> entries;
  entries.reserve(r.count);
  uint64_t expect_pos = start;
  std::vector<uint8_t> re;
  for (size_t i = 0; i < r.count; ++i) {
    Entry e = GetEntry(ix, i);
    // Contiguous from start, each record wholly inside [start, end).
    CHECK(e.pos == expect_pos);
    CHECK(e.pos >= start && e.pos < end);
    CHECK(e.length <= kMaxPayload);
    CHECK(e.length <= end - e.pos - kHdr);
    const size_t total = kHdr + e.length;
    CHECK(e.pos + total <= end);
    const uint8_t* p = buf + e.pos;
    // Index fields are the header fields.
    CHECK(Le32(p + 4) == e.length);
    CHECK(p[8] == e.type && p[9] == e.flags);
    CHECK(p[10] == 0 && p[11] == 0);
    CHECK(Le32(p + 12) == e.aux);
    CHECK(Le64(p + 16) == e.lsn);
    CHECK(Le64(p + 24) == e.mark);
    CHECK(RefFieldsValid(e.type, e.flags, e.aux, e.length, e.lsn, e.mark));
    // The checksum is CRC32C over everything after the crc field.
    CHECK(Le32(p) == Crc32cPortable(0, p + 4, total - 4));
    // Re-encoding from the parsed fields reproduces the exact bytes, however the
    // payload is split between the encoder's two pieces.
    re.assign(total, 0xA5);
    const size_t a_len = (e.type == kPut && e.aux <= e.length) ? e.aux : e.length;
    CHECK(EncodeRecord(re.data(), e.type, e.flags, e.aux, e.lsn, e.mark, p + kHdr, a_len,
                       p + kHdr + a_len, e.length - a_len) == total);
    CHECK(std::memcmp(re.data(), p, total) == 0);
    const size_t s = e.length ? split % (e.length + 1) : 0;
    re.assign(total, 0x5A);
    CHECK(EncodeRecord(re.data(), e.type, e.flags, e.aux, e.lsn, e.mark, p + kHdr, s,
                       p + kHdr + s, e.length - s) == total);
    CHECK(std::memcmp(re.data(), p, total) == 0);
    // ValidRecordAt agrees with the scan, with the real end and with a tight end.
    CHECK(ValidRecordAt(buf, e.pos, end) == total);
    CHECK(ValidRecordAt(buf, e.pos, e.pos + total) == total);
    CHECK(ValidRecordAt(buf, e.pos, e.pos + total - 1) == 0);
    // A valid record at pos is the first valid record from pos.
    CHECK(FindNextRecord(buf, e.pos, end) == e.pos);
    entries.push_back(e);
    expect_pos += total;
  }
  CHECK(r.stop == expect_pos);

  const size_t remaining = end - r.stop;
  switch (r.status) {
    case kScanEnd:
      CHECK(r.stop == end);
      break;
    case kScanLimit:
      CHECK(r.count == max_records);
      CHECK(r.stop < end);
      break;
    case kScanNeedMore:
      CHECK(r.stop < end);
      CHECK(r.need >= kHdr);
      CHECK(r.stop + r.need > end);
      CHECK(ValidRecordAt(buf, r.stop, end) == 0);
      if (remaining >= kHdr) {
        // A whole header that claims more bytes than there are.
        CHECK(!AllZero(buf + r.stop, kHdr));
        CHECK(r.need == kHdr + Le32(buf + r.stop + 4));
        CHECK(buf[r.stop + 10] == 0 && buf[r.stop + 11] == 0);
        CHECK(RefFieldsValid(buf[r.stop + 8], buf[r.stop + 9], Le32(buf + r.stop + 12),
                             Le32(buf + r.stop + 4), Le64(buf + r.stop + 16),
                             Le64(buf + r.stop + 24)));
      } else {
        CHECK(r.need == kHdr);
        CHECK(!AllZero(buf + r.stop, remaining));
      }
      break;
    case kScanBad:
      CHECK(r.stop < end);
      CHECK(remaining >= kHdr);
      CHECK(!AllZero(buf + r.stop, kHdr));
      CHECK(ValidRecordAt(buf, r.stop, end) == 0);
      break;
    case kScanZero:
      CHECK(r.stop < end);
      CHECK(AllZero(buf + r.stop, remaining < kHdr ? remaining : kHdr));
      CHECK(ValidRecordAt(buf, r.stop, end) == 0);
      break;
    default:
      Fail(__FILE__, __LINE__, "unknown scan status");
  }
  return entries;
}

ScanResult Scan(const uint8_t* buf, size_t start, size_t end, size_t max_records,
                std::vector<double>* ix) {
  ix->clear();
  return ScanRecords(buf, start, end, max_records, ix);
}

// FindNextRecord(start, end): in [start, end]; a valid record there unless it is end;
// and (within a bounded window, to keep executions fast) no valid record before it.
size_t CheckFindNext(const uint8_t* buf, size_t start, size_t end) {
  const size_t f = FindNextRecord(buf, start, end);
  CHECK(f >= start && f <= end);
  if (f < end) {
    CHECK(ValidRecordAt(buf, f, end) != 0);
  } else if (start < end) {
    CHECK(end - start < kHdr || ValidRecordAt(buf, end - kHdr, end) == 0);
  }
  const size_t window_end = f - start > 2048 ? start + 2048 : f;
  for (size_t q = start; q < window_end; ++q) CHECK(ValidRecordAt(buf, q, end) == 0);
  return f;
}

// Picks an offset in [lo, hi] biased towards record boundaries from `bounds`.
size_t PickOffset(FuzzedDataProvider& fdp, const std::vector<size_t>& bounds, size_t lo,
                  size_t hi) {
  const uint8_t how = fdp.ConsumeIntegral<uint8_t>();
  size_t v;
  switch (how & 3) {
    case 0:
      v = (how & 4) ? hi : lo;
      break;
    case 1:
    case 2: {
      v = bounds.empty() ? lo : bounds[fdp.ConsumeIntegral<uint16_t>() % bounds.size()];
      if ((how & 3) == 2) {
        const size_t d = fdp.ConsumeIntegralInRange<uint8_t>(0, 80);  // v - 40 .. v + 40
        v = d < 40 ? (v >= 40 - d ? v - (40 - d) : 0) : v + (d - 40);
      }
      break;
    }
    default:
      v = lo + fdp.ConsumeIntegral<uint32_t>() % (hi - lo + 1);
  }
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return v;
}

// Part 1: the input as an untrusted chunk.
void FuzzChunk(const uint8_t* data, size_t size) {
  std::vector<double> ix;
  // The production call: the whole buffer, no record limit.
  Chunk whole(data, size);
  const ScanResult full = Scan(whole.data(), 0, size, SIZE_MAX, &ix);
  const std::vector<Entry> all = CheckScan(whole.data(), 0, size, SIZE_MAX, full, ix, size);
  CHECK(full.status != kScanLimit);
  {
    const size_t f = CheckFindNext(whole.data(), 0, size);
    if (!all.empty()) CHECK(f == 0);
    if (full.status == kScanBad || full.status == kScanNeedMore || full.status == kScanZero)
      CheckFindNext(whole.data(), full.stop, size);
  }

  // Record boundaries (start of each record, then the scan's stop) to aim windows at.
  std::vector<size_t> bounds;
  for (const Entry& e : all) bounds.push_back(e.pos);
  bounds.push_back(full.stop);

  // Window parameters come from the input's trailing bytes.
  FuzzedDataProvider fdp(data, size);
  const size_t start = PickOffset(fdp, bounds, 0, size);
  const size_t end = PickOffset(fdp, bounds, start, size);
  const uint8_t lim = fdp.ConsumeIntegral<uint8_t>();
  const size_t max_records = (lim & 0x80) ? SIZE_MAX : lim % 9;
  const size_t split = fdp.ConsumeIntegral<uint32_t>();

  // Exact-size copy: the window's bytes are all the codec may touch.
  Chunk win(data, end);
  const ScanResult r = Scan(win.data(), start, end, max_records, &ix);
  const std::vector<Entry> got = CheckScan(win.data(), start, end, max_records, r, ix, split);
  CheckFindNext(win.data(), start, end);
  if (r.status != kScanEnd && r.stop < end) CheckFindNext(win.data(), r.stop, end);

  // ValidRecordAt at any offset q agrees with a one-record scan from q; past end it is 0.
  {
    const size_t q = start + split % (end - start + 1);
    const size_t v = ValidRecordAt(win.data(), q, end);
    std::vector<double> one;
    const ScanResult s1 = Scan(win.data(), q, end, 1, &one);
    CheckScan(win.data(), q, end, 1, s1, one, split);
    CHECK((v != 0) == (s1.count == 1));
    if (v) CHECK(GetEntry(one, 0).length + kHdr == v);
    CHECK(ValidRecordAt(win.data(), end + 1 + split % 64, end) == 0);
    CHECK(FindNextRecord(win.data(), end, end) == end);
  }

  // Resuming at stop in steps of `step` records gives the same records as one unlimited
  // scan, and the same final status/stop/need.
  std::vector<double> ix_all;
  const ScanResult once = Scan(win.data(), start, end, SIZE_MAX, &ix_all);
  const std::vector<Entry> once_entries =
      CheckScan(win.data(), start, end, SIZE_MAX, once, ix_all, split);
  CHECK(r.count <= once.count);
  CHECK(std::equal(ix.begin(), ix.end(), ix_all.begin()));
  if (r.status != kScanLimit) {
    CHECK(r.status == once.status && r.stop == once.stop && r.need == once.need &&
          r.count == once.count);
  }
  {
    const size_t step = 1 + lim % 3;
    size_t pos = start, count = 0;
    ScanResult s;
    std::vector<double> ix_step;
    for (;;) {
      s = Scan(win.data(), pos, end, step, &ix_step);
      CheckScan(win.data(), pos, end, step, s, ix_step, split);
      CHECK(count + s.count <= once.count);
      CHECK(std::equal(ix_step.begin(), ix_step.end(), ix_all.data() + count * kIndexStride));
      count += s.count;
      pos = s.stop;
      if (s.status != kScanLimit) break;
    }
    CHECK(count == once.count && s.status == once.status && s.stop == once.stop &&
          s.need == once.need);
  }

  // Scanning a window that starts at 0 sees exactly the leading records of the whole
  // buffer's scan that end by `end`, and a record cut by `end` is reported as needing
  // its full size.
  if (start == 0) {
    size_t k = 0;
    while (k < all.size() && all[k].pos + kHdr + all[k].length <= end) ++k;
    CHECK(once.count == k);
    for (size_t i = 0; i < k; ++i) CHECK(once_entries[i].pos == all[i].pos);
    if (k < all.size() && end - all[k].pos >= kHdr) {
      CHECK(once.status == kScanNeedMore && once.stop == all[k].pos);
      CHECK(once.need == kHdr + all[k].length);
    }
  }
}

// Part 2: records built with EncodeRecord from input-derived fields.
struct Built {
  size_t pos, total;
  uint8_t type, flags;
  uint32_t aux;
  uint64_t length, lsn, mark;
  bool valid;
};

void FillPayload(FuzzedDataProvider& fdp, uint8_t* dst, size_t n) {
  std::vector<uint8_t> got = fdp.ConsumeBytes<uint8_t>(n);
  if (!got.empty()) std::memcpy(dst, got.data(), got.size());
  uint32_t x = 0x9E3779B9u ^ static_cast<uint32_t>(n);
  for (size_t i = got.size(); i < n; ++i) {  // input ran out: a cheap deterministic pattern
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    dst[i] = static_cast<uint8_t>(x);
  }
}

void FuzzRoundTrip(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(0, 12);
  std::vector<uint8_t> buf;
  std::vector<Built> recs;
  uint64_t lsn = fdp.ConsumeIntegralInRange<uint64_t>(1, kLsnLimit - 1);
  for (size_t i = 0; i < n; ++i) {
    Built b{};
    const uint8_t mode = fdp.ConsumeIntegral<uint8_t>();
    size_t alen = 0, blen = 0;
    if (mode >= 0xF0) {
      // Arbitrary header fields: the scanner must accept exactly the valid ones.
      b.type = fdp.ConsumeIntegral<uint8_t>();
      b.flags = fdp.ConsumeIntegral<uint8_t>();
      b.aux = fdp.ConsumeIntegral<uint32_t>();
      b.lsn = (mode & 1) ? fdp.ConsumeIntegral<uint64_t>() : lsn;
      b.mark = (mode & 2) ? fdp.ConsumeIntegral<uint64_t>() : fdp.ConsumeIntegralInRange<uint64_t>(0, lsn);
      alen = fdp.ConsumeIntegralInRange<size_t>(0, 24);
      blen = fdp.ConsumeIntegralInRange<size_t>(0, 24);
    } else {
      b.type = static_cast<uint8_t>(kPut + mode % 5);
      b.lsn = lsn;
      b.mark = fdp.ConsumeIntegralInRange<uint64_t>(0, lsn);
      const bool big = (mode & 0xE0) == 0xE0 && (mode & 0x08);  // rare: > 3 * 4 KiB
      const size_t max_len = big ? 40000 : 64;
      switch (b.type) {
        case kPut:
          b.flags = (mode & 0x10) ? kFlagBatch : 0;
          alen = fdp.ConsumeIntegralInRange<size_t>(0, max_len);
          blen = fdp.ConsumeIntegralInRange<size_t>(0, max_len);
          b.aux = static_cast<uint32_t>(alen);
          break;
        case kDel:
          b.flags = (mode & 0x10) ? kFlagBatch : 0;
          alen = fdp.ConsumeIntegralInRange<size_t>(0, max_len);
          b.aux = static_cast<uint32_t>(alen);
          break;
        case kBegin:
          b.aux = fdp.ConsumeIntegralInRange<uint32_t>(1, UINT32_MAX);
          break;
        case kCommit:
          b.aux = fdp.ConsumeIntegralInRange<uint32_t>(1, UINT32_MAX);
          alen = 8;
          break;
        default:  // kCheckpoint
          alen = 8;
          break;
      }
    }
    b.length = alen + blen;
    b.valid = RefFieldsValid(b.type, b.flags, b.aux, b.length, b.lsn, b.mark);
    std::vector<uint8_t> payload(alen + blen);
    FillPayload(fdp, payload.data(), payload.size());
    b.pos = buf.size();
    b.total = kHdr + b.length;
    buf.resize(b.pos + b.total, 0xEE);
    CHECK(EncodeRecord(buf.data() + b.pos, b.type, b.flags, b.aux, b.lsn, b.mark,
                       payload.data(), alen, payload.data() + alen, blen) == b.total);
    CHECK(std::equal(payload.begin(), payload.end(), buf.data() + b.pos + kHdr));
    recs.push_back(b);
    if (lsn < kLsnLimit - 1) ++lsn;
    if (!b.valid) break;  // scanning stops here; nothing after it is reachable
  }
  const size_t body = buf.size();

  // Leading valid records, and where the first invalid one (if any) sits.
  size_t nvalid = 0;
  while (nvalid < recs.size() && recs[nvalid].valid) ++nvalid;

  // Optional damage: one byte of one valid record changed (not its length field, whose
  // change could legitimately re-frame the record). CRC32C detects every burst of up to
  // 32 bits, so that record must be rejected.
  const uint8_t damage = fdp.ConsumeIntegral<uint8_t>();
  size_t damaged = SIZE_MAX;
  if ((damage & 3) == 1 && nvalid > 0) {
    damaged = fdp.ConsumeIntegral<uint16_t>() % nvalid;
    const Built& d = recs[damaged];
    size_t off = fdp.ConsumeIntegral<uint32_t>() % (d.total - 4);
    if (off >= 4) off += 4;  // skip bytes 4..7 (length)
    buf[d.pos + off] ^= fdp.ConsumeIntegralInRange<uint8_t>(1, 255);
  }

  // Tail: none, zeros (a preallocated file), garbage, or a truncation of the body.
  const uint8_t tail = fdp.ConsumeIntegral<uint8_t>();
  size_t end = body;
  switch (tail & 3) {
    case 1:
      buf.resize(body + 1 + tail % 64, 0);
      end = buf.size();
      break;
    case 2: {
      std::vector<uint8_t> junk = fdp.ConsumeBytes<uint8_t>(1 + tail % 64);
      buf.insert(buf.end(), junk.begin(), junk.end());
      end = buf.size();
      break;
    }
    case 3:
      if (body) end = body - 1 - fdp.ConsumeIntegral<uint32_t>() % body;
      break;
    default:
      break;
  }

  Chunk c(buf.data(), end);
  std::vector<double> ix;
  const ScanResult r = Scan(c.data(), 0, end, SIZE_MAX, &ix);
  CheckScan(c.data(), 0, end, SIZE_MAX, r, ix, tail);
  CheckFindNext(c.data(), 0, end);

  // Expected: every leading valid record that is undamaged and wholly before end.
  size_t expect = 0;
  while (expect < nvalid && expect != damaged && recs[expect].pos + recs[expect].total <= end)
    ++expect;
  // Garbage after the last record may itself hold records (the fuzzer can write them).
  const bool open_tail = expect == recs.size() && (tail & 3) == 2;
  CHECK(r.count == expect || (open_tail && r.count > expect));
  for (size_t i = 0; i < expect; ++i) {
    const Entry e = GetEntry(ix, i);
    const Built& b = recs[i];
    CHECK(e.pos == b.pos && e.length == b.length && e.type == b.type && e.flags == b.flags &&
          e.aux == b.aux && e.lsn == b.lsn && e.mark == b.mark);
    // Resync from inside a record never skips the next intact record.
    if (i + 1 < expect) CHECK(FindNextRecord(c.data(), b.pos + 1, end) <= recs[i + 1].pos);
  }
  if (expect < recs.size()) {
    const Built& b = recs[expect];
    CHECK(r.stop == b.pos);
    if (b.pos + b.total <= end) {
      // Whole record present: it was rejected for its fields or for the damage.
      CHECK(!b.valid || expect == damaged);
      CHECK(r.status == kScanBad);
      CHECK(ValidRecordAt(c.data(), b.pos, end) == 0);
      CHECK(FindNextRecord(c.data(), b.pos, end) != b.pos);
    } else if (end - b.pos >= kHdr) {
      // Whole header, cut payload.
      if (expect == damaged) {
        CHECK(r.status == kScanBad || (r.status == kScanNeedMore && r.need == b.total));
      } else if (!b.valid) {
        CHECK(r.status == kScanBad);
      } else {
        CHECK(r.status == kScanNeedMore && r.need == b.total);
      }
    } else if (end == b.pos) {
      // Cut exactly at a record boundary.
      CHECK(r.status == kScanEnd);
    } else {
      // Cut header.
      CHECK(r.status == kScanNeedMore || r.status == kScanZero);
      if (r.status == kScanNeedMore) CHECK(r.need == kHdr);
    }
  } else if (r.count == expect) {
    CHECK(r.stop == body);
    if ((tail & 3) == 1) CHECK(r.status == kScanZero);
    if ((tail & 3) == 0) CHECK(r.status == kScanEnd);
  }
}

// Part 3: CRC32C, the dispatching path against the portable table, whole and split.
void CheckCrcSplits(const uint8_t* p, size_t n, uint32_t seed, FuzzedDataProvider& fdp) {
  const uint32_t hw = Crc32c(seed, p, n);
  const uint32_t sw = Crc32cPortable(seed, p, n);
  CHECK(hw == sw);
  for (int round = 0; round < 3; ++round) {
    size_t a = n ? fdp.ConsumeIntegral<uint32_t>() % (n + 1) : 0;
    size_t b = n ? fdp.ConsumeIntegral<uint32_t>() % (n + 1) : 0;
    if (a > b) std::swap(a, b);
    // Seeded continuation across three pieces, mixing the two implementations.
    uint32_t c = Crc32c(seed, p, a);
    c = Crc32cPortable(c, p + a, b - a);
    c = Crc32c(c, p + b, n - b);
    CHECK(c == hw);
    uint32_t d = Crc32cPortable(seed, p, a);
    d = Crc32c(d, p + a, b - a);
    d = Crc32cPortable(d, p + b, n - b);
    CHECK(d == hw);
  }
}

void FuzzCrc(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  Chunk c(data, size);
  CheckCrcSplits(c.data(), size, 0, fdp);
  CheckCrcSplits(c.data(), size, fdp.ConsumeIntegral<uint32_t>(), fdp);
  // Odd alignments of the same bytes (the hardware path aligns to 8 before 64-bit loads).
  if (size) {
    const size_t shift = 1 + size % 7;
    std::unique_ptr<uint8_t[]> m(new uint8_t[size + shift]);
    std::memcpy(m.get() + shift, data, size);
    CHECK(Crc32c(0, m.get() + shift, size) == Crc32cPortable(0, data, size));
  }
  // Sometimes stretch the input past 3 * 4 KiB so the 3-stream hardware path runs.
  if (size && (data[0] & 0x0F) == 0x0F) {
    const size_t len = 3 * 4096 + (Le32Safe(data, size) % (3 * 4096 + 64));
    const size_t shift = data[size - 1] & 7;
    std::unique_ptr<uint8_t[]> m(new uint8_t[len + shift]);
    for (size_t i = 0; i < len; ++i) m[shift + i] = static_cast<uint8_t>(data[i % size] + i / size);
    CheckCrcSplits(m.get() + shift, len, fdp.ConsumeIntegral<uint32_t>(), fdp);
  }
}

// Part 5: batches and checkpoints built with the codec's own encoders.

// Reference statement of what the batch checks accept, from the records a batch writes:
// the count is BEGIN's and COMMIT's aux (a u32, at least 1), BEGIN and COMMIT carry the
// first and last LSN, and the batch's records must not claim to be durable already
// (mark below the first LSN).
bool RefBatchValid(uint64_t n, uint64_t first, uint64_t mark) {
  if (n == 0 || n > UINT32_MAX) return false;
  if (n - 1 > UINT64_MAX - first) return false;  // the last LSN would wrap
  const uint64_t last = first + n - 1;
  const uint32_t aux = static_cast<uint32_t>(n);
  return mark < first && RefFieldsValid(kBegin, 0, aux, 0, first, mark) &&
         RefFieldsValid(kCommit, 0, aux, kLsnPayloadSize, last, mark);
}

// The bytes of a batch written record by record, as codec.h describes the framing.
std::vector<uint8_t> RefBatch(const std::vector<Op>& ops, uint64_t first, uint64_t mark) {
  const uint32_t n = static_cast<uint32_t>(ops.size());
  std::vector<uint8_t> out(kHdr);
  EncodeRecord(out.data(), kBegin, 0, n, first, mark, nullptr, 0, nullptr, 0);
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    const size_t at = out.size();
    out.resize(at + kHdr + op.key_len + op.value_len);
    EncodeRecord(out.data() + at, op.type, kFlagBatch, static_cast<uint32_t>(op.key_len), first + i, mark, op.key,
                 op.key_len, op.value, op.value_len);
  }
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(first >> (8 * i));
  const size_t at = out.size();
  out.resize(at + kHdr + 8);
  EncodeRecord(out.data() + at, kCommit, 0, n, first + n - 1, mark, le, 8, nullptr, 0);
  return out;
}

void FuzzBatch(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);

  // Operations from the input: valid PUTs and DELs with short keys and values.
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(1, 16);
  std::vector<std::vector<uint8_t>> keys(n), values(n);
  std::vector<Op> ops(n);
  uint64_t payload = 0;
  for (size_t i = 0; i < n; ++i) {
    ops[i].type = fdp.ConsumeBool() ? kPut : kDel;
    keys[i] = fdp.ConsumeBytes<uint8_t>(fdp.ConsumeIntegralInRange<size_t>(0, 40));
    if (ops[i].type == kPut) values[i] = fdp.ConsumeBytes<uint8_t>(fdp.ConsumeIntegralInRange<size_t>(0, 200));
    ops[i].key = keys[i].empty() ? nullptr : keys[i].data();
    ops[i].key_len = keys[i].size();
    ops[i].value = values[i].empty() ? nullptr : values[i].data();
    ops[i].value_len = values[i].size();
    CHECK(CheckOp(ops[i].type, ops[i].key_len, ops[i].value_len) == nullptr);
    payload += ops[i].key_len + ops[i].value_len;
  }

  // LSNs near 1, against the top of the range, or anywhere; any mark below the first.
  const uint8_t where = fdp.ConsumeIntegral<uint8_t>();
  const uint64_t top = kMaxLsn - (n - 1);  // highest first LSN for n operations
  uint64_t first;
  switch (where % 3) {
    case 0:
      first = 1 + where / 3 % 4;
      break;
    case 1:
      first = top - where / 3 % 4;
      break;
    default:
      first = fdp.ConsumeIntegralInRange<uint64_t>(1, top);
  }
  const uint64_t mark = fdp.ConsumeIntegralInRange<uint64_t>(0, first - 1);
  CHECK(CheckBatch(n, first, mark) == nullptr);

  // The encoder writes BatchSize bytes, exactly the record-by-record framing.
  const uint64_t bytes = BatchSize(ops.data(), n);
  CHECK(bytes == MinBatchSize(n) + payload);
  std::vector<uint8_t> buf(bytes + kCheckpointRecordSize, 0xEE);
  CHECK(EncodeBatch(buf.data(), ops.data(), n, first, mark) == bytes);
  const std::vector<uint8_t> ref = RefBatch(ops, first, mark);
  CHECK(ref.size() == bytes && std::memcmp(ref.data(), buf.data(), bytes) == 0);

  // A checkpoint record after it.
  const uint64_t cp_lsn = first + n - 1;
  const uint64_t cp_mark = fdp.ConsumeIntegralInRange<uint64_t>(mark, cp_lsn);
  const uint64_t cp = fdp.ConsumeIntegralInRange<uint64_t>(0, kMaxLsn);
  CHECK(CheckCheckpoint(cp_lsn, cp_mark, cp) == nullptr);
  CHECK(EncodeCheckpoint(buf.data() + bytes, cp_lsn, cp_mark, cp) == kCheckpointRecordSize);
  std::vector<uint8_t> ref_cp(kCheckpointRecordSize);
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(cp >> (8 * i));
  EncodeRecord(ref_cp.data(), kCheckpoint, 0, 0, cp_lsn, cp_mark, le, 8, nullptr, 0);
  CHECK(std::memcmp(ref_cp.data(), buf.data() + bytes, kCheckpointRecordSize) == 0);

  // The scanner reads back every record, field for field.
  const size_t end = buf.size();
  Chunk c(buf.data(), end);
  std::vector<double> ix;
  const ScanResult r = Scan(c.data(), 0, end, SIZE_MAX, &ix);
  const std::vector<Entry> got = CheckScan(c.data(), 0, end, SIZE_MAX, r, ix, where);
  CHECK(r.status == kScanEnd && r.stop == end && got.size() == n + 3);
  const Entry& begin = got[0];
  CHECK(begin.type == kBegin && begin.flags == 0 && begin.aux == n && begin.lsn == first && begin.mark == mark &&
        begin.length == 0);
  for (size_t i = 0; i < n; ++i) {
    const Entry& e = got[1 + i];
    const Op& op = ops[i];
    CHECK(e.type == op.type && e.flags == kFlagBatch && e.aux == op.key_len && e.lsn == first + i &&
          e.mark == mark && e.length == op.key_len + op.value_len);
    const uint8_t* body = c.data() + e.pos + kHdr;
    CHECK(std::equal(keys[i].begin(), keys[i].end(), body));
    CHECK(std::equal(values[i].begin(), values[i].end(), body + op.key_len));
  }
  const Entry& commit = got[n + 1];
  CHECK(commit.type == kCommit && commit.flags == 0 && commit.aux == n && commit.lsn == first + n - 1 &&
        commit.mark == mark && commit.length == kLsnPayloadSize);
  CHECK(Le64(c.data() + commit.pos + kHdr) == first);  // the BEGIN's LSN
  const Entry& checkpoint = got[n + 2];
  CHECK(checkpoint.type == kCheckpoint && checkpoint.flags == 0 && checkpoint.aux == 0 &&
        checkpoint.lsn == cp_lsn && checkpoint.mark == cp_mark && checkpoint.length == kLsnPayloadSize);
  CHECK(Le64(c.data() + checkpoint.pos + kHdr) == cp);

  // The Check* functions against the record field rules, on arbitrary arguments (often
  // near the limits: 0, 1, kMaxLsn, 2^53, 2^32, kMaxPayload).
  auto pick = [&fdp](uint64_t near) -> uint64_t {
    const uint8_t how = fdp.ConsumeIntegral<uint8_t>();
    switch (how & 3) {
      case 0:
        return near + (how >> 2) % 5 - 2;  // near - 2 .. near + 2 (wraps below 0: also fine)
      case 1:
        return (how >> 2) % 4;
      default:
        return fdp.ConsumeIntegral<uint64_t>();
    }
  };
  const uint8_t type = fdp.ConsumeIntegralInRange<uint8_t>(0, 6);
  const uint64_t key_len = pick(kMaxPayload) & 0xFFFFFFFFu;
  const uint64_t value_len = pick(kMaxPayload - key_len) & 0xFFFFFFFFu;
  const bool op_ok = RefFieldsValid(type, kFlagBatch, static_cast<uint32_t>(key_len), key_len + value_len, 1, 0);
  CHECK((CheckOp(type, key_len, value_len) == nullptr) == op_ok);
  const uint64_t lsn = pick(kMaxLsn);
  const uint64_t lsn_mark = pick(lsn);
  // A standalone record is a PUT or DEL (a COMMIT's fields can pass the field rules).
  CHECK((CheckRecord(type, key_len, value_len, lsn, lsn_mark) == nullptr) ==
        ((type == kPut || type == kDel) &&
         RefFieldsValid(type, 0, static_cast<uint32_t>(key_len), key_len + value_len, lsn, lsn_mark)));
  const uint64_t checkpoint_lsn = pick(kMaxLsn);
  CHECK((CheckCheckpoint(lsn, lsn_mark, checkpoint_lsn) == nullptr) ==
        (RefFieldsValid(kCheckpoint, 0, 0, kLsnPayloadSize, lsn, lsn_mark) && checkpoint_lsn < kLsnLimit));
  const uint64_t bn = pick(uint64_t{1} << 32);
  const uint64_t bfirst = pick(kMaxLsn - (bn - 1));
  const uint64_t bmark = pick(bfirst);
  CHECK((CheckBatch(bn, bfirst, bmark) == nullptr) == RefBatchValid(bn, bfirst, bmark));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Known answers (RFC 3720 B.4 / the usual "123456789" check value).
  static const uint8_t kCheck[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  CHECK(Crc32c(0, kCheck, 9) == 0xE3069283u);
  CHECK(Crc32cPortable(0, kCheck, 9) == 0xE3069283u);
  uint8_t zeros[32] = {0};
  CHECK(Crc32c(0, zeros, 32) == 0x8A9136AAu);
  std::fprintf(stderr, "fuzz_decoder: Crc32c implementation = %s\n", Crc32cImplementation());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzChunk(data, size);
  FuzzRoundTrip(data, size);
  FuzzCrc(data, size);
  FuzzBatch(data, size);
  return 0;
}
