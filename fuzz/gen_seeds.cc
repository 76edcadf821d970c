// Writes the seed corpus for fuzz_decoder into the directory given as argv[1]
// (scripts/fuzz.sh runs it when fuzz/seeds/ is missing or empty). Seeds are tiny:
// a valid record, a batch, zeros, a zero tail, a truncation, damage followed by
// intact records, a rule-breaking COMMIT, and a batch followed by bytes the fuzzer
// reads as scan parameters.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../native/codec.h"

using namespace fastwal;

namespace {

using Bytes = std::vector<uint8_t>;

void Add(Bytes* out, uint8_t type, uint8_t flags, uint32_t aux, uint64_t lsn, uint64_t mark,
         const std::string& a, const std::string& b) {
  const size_t at = out->size();
  out->resize(at + kRecordHeaderSize + a.size() + b.size());
  EncodeRecord(out->data() + at, type, flags, aux, lsn, mark,
               reinterpret_cast<const uint8_t*>(a.data()), a.size(),
               reinterpret_cast<const uint8_t*>(b.data()), b.size());
}

std::string Le64(uint64_t v) {
  std::string s(8, '\0');
  for (size_t i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

const uint8_t* Data(const char* s) { return reinterpret_cast<const uint8_t*>(s); }

// Appends a batch framed by the codec's own encoder (BEGIN, members, COMMIT).
void AddBatch(Bytes* out, const Op* ops, size_t n, uint64_t first, uint64_t mark) {
  const size_t at = out->size();
  out->resize(at + BatchSize(ops, n));
  EncodeBatch(out->data() + at, ops, n, first, mark);
}

void AddCheckpoint(Bytes* out, uint64_t lsn, uint64_t mark, uint64_t checkpoint_lsn) {
  const size_t at = out->size();
  out->resize(at + kCheckpointRecordSize);
  EncodeCheckpoint(out->data() + at, lsn, mark, checkpoint_lsn);
}

// PUT key=value at LSN 1; a batch of PUT a=1, DEL b at LSNs 2..3 (mark 1); a checkpoint
// of LSN 3 at LSN 4 (mark 3).
Bytes Batch() {
  Bytes b;
  Add(&b, kPut, 0, 3, 1, 0, "key", "value");
  const Op ops[] = {{kPut, Data("a"), 1, Data("1"), 1}, {kDel, Data("b"), 1, nullptr, 0}};
  AddBatch(&b, ops, 2, 2, 1);
  AddCheckpoint(&b, 4, 3, 3);
  return b;
}

bool Write(const std::string& dir, const char* name, const Bytes& data) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::perror(path.c_str());
    return false;
  }
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  return (std::fclose(f) == 0) && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <seed-dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = true;

  Bytes put;
  Add(&put, kPut, 0, 1, 1, 0, "k", "v");
  ok &= Write(dir, "put", put);

  const Bytes batch = Batch();
  ok &= Write(dir, "batch", batch);

  ok &= Write(dir, "zeros", Bytes(64, 0));

  Bytes zero_tail = batch;
  zero_tail.resize(zero_tail.size() + 48, 0);
  ok &= Write(dir, "batch-zero-tail", zero_tail);

  Bytes truncated(batch.begin(), batch.end() - 5);
  ok &= Write(dir, "batch-truncated", truncated);

  Bytes damaged = batch;
  damaged[40 + 16] ^= 0x40;  // the BEGIN record's lsn (it starts at 40): a CRC mismatch
  ok &= Write(dir, "batch-damaged", damaged);

  // Field-rule rejections that random mutation rarely reaches: COMMIT with aux 0, then
  // an intact record after it for FindNextRecord to resync to.
  Bytes rules;
  Add(&rules, kCommit, 0, 0, 5, 0, Le64(4), "");
  Add(&rules, kPut, 0, 1, 6, 5, "k", "v");
  ok &= Write(dir, "commit-aux0", rules);

  // Trailing bytes drive the window/limit choices (FuzzedDataProvider reads from the end).
  Bytes ctl = batch;
  for (int v : {0x02, 0x00, 0x01, 0x03, 0x01, 0x05, 0x28, 0x01}) ctl.push_back(static_cast<uint8_t>(v));
  ok &= Write(dir, "batch-params", ctl);

  return ok ? 0 : 1;
}
