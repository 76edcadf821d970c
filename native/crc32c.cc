// CRC32C with a run-time choice between CPU instructions and a slicing-by-8 table.
// The hardware path on x86-64 runs three independent streams over large inputs (the
// crc32 instruction has a 3-cycle latency but issues once per cycle) and merges them
// with precomputed "shift by N zero bytes" tables, so no carry-less multiply is needed.
#include "crc32c.h"

#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#define FASTWAL_X86 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#include <nmmintrin.h>
#define FASTWAL_TARGET_SSE42
#else
#include <cpuid.h>
#include <nmmintrin.h>
#define FASTWAL_TARGET_SSE42 __attribute__((target("sse4.2")))
#endif
#elif defined(__aarch64__) || defined(_M_ARM64)
#define FASTWAL_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#include <arm64intr.h>
#define FASTWAL_TARGET_CRC
#else
#include <arm_acle.h>
#define FASTWAL_TARGET_CRC __attribute__((target("+crc")))
#endif
#endif

namespace fastwal {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;

struct Tables {
  uint32_t slice[8][256];
  // shift[k][i]: the CRC register after feeding (bytes of i at position k) followed by
  // kShiftBytes zero bytes; used to advance a stream's CRC past the other streams' data.
  uint32_t shift[4][256];
};

constexpr size_t kStreamBlock = 4096;  // bytes per stream per round on the 3-stream path

// mat applied to vec: the xor of the columns of vec's set bits.
uint32_t Times(const uint32_t (&mat)[32], uint32_t vec) {
  uint32_t sum = 0;
  for (int b = 0; vec != 0; ++b, vec >>= 1)
    if (vec & 1) sum ^= mat[b];
  return sum;
}

// mat = mat * mat.
void Square(uint32_t (&mat)[32]) {
  uint32_t sq[32];
  for (int b = 0; b < 32; ++b) sq[b] = Times(mat, mat[b]);
  for (int b = 0; b < 32; ++b) mat[b] = sq[b];
}

Tables BuildTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t.slice[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s)
      t.slice[s][i] = (t.slice[s - 1][i] >> 8) ^ t.slice[0][t.slice[s - 1][i] & 0xFF];
  // The register is linear over GF(2): advancing it past n zero bytes is a 32x32 bit matrix
  // (column b: where bit b goes). One zero bit is a shift right with kPoly folded in; 8 of
  // them make a byte; squaring doubles the count, so 12 squarings reach 4096 bytes. (Bit by
  // bit, 1M steps, took ~1 ms at load; table steps 0.3 ms; this a few microseconds.)
  static_assert(kStreamBlock == 4096, "12 squarings of the one-byte operator");
  uint32_t op[32];
  op[0] = kPoly;
  for (int b = 1; b < 32; ++b) op[b] = 1u << (b - 1);
  for (int i = 0; i < 3 + 12; ++i) Square(op);  // 2^3 bits = 1 byte, then 2^12 bytes
  // The shift of x is the xor of the shifts of its set bits: op's 32 columns give all four
  // byte tables.
  for (uint32_t k = 0; k < 4; ++k)
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t v = 0;
      for (uint32_t j = 0; j < 8; ++j)
        if (i & (1u << j)) v ^= op[8 * k + j];
      t.shift[k][i] = v;
    }
  return t;
}

const Tables& GetTables() {
  static const Tables tables = BuildTables();
  return tables;
}

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;  // little-endian hosts only (x86-64, arm64): see binding.gyp targets
}

uint32_t PortableRaw(uint32_t c, const uint8_t* p, size_t n) {
  const Tables& t = GetTables();
  while (n >= 8) {
    uint64_t v = Load64(p) ^ c;
    c = t.slice[7][v & 0xFF] ^ t.slice[6][(v >> 8) & 0xFF] ^ t.slice[5][(v >> 16) & 0xFF] ^
        t.slice[4][(v >> 24) & 0xFF] ^ t.slice[3][(v >> 32) & 0xFF] ^ t.slice[2][(v >> 40) & 0xFF] ^
        t.slice[1][(v >> 48) & 0xFF] ^ t.slice[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ t.slice[0][(c ^ *p++) & 0xFF];
  return c;
}

inline uint32_t ShiftBlock(uint32_t c) {
  const Tables& t = GetTables();
  return t.shift[0][c & 0xFF] ^ t.shift[1][(c >> 8) & 0xFF] ^ t.shift[2][(c >> 16) & 0xFF] ^
         t.shift[3][c >> 24];
}

#if FASTWAL_X86
FASTWAL_TARGET_SSE42 uint32_t Sse42Raw(uint32_t c, const uint8_t* p, size_t n) {
  // Align to 8 bytes so the 64-bit loads do not split cache lines.
  while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  uint64_t c0 = c;
  while (n >= 3 * kStreamBlock) {
    uint64_t c1 = 0, c2 = 0;
    const uint8_t* p1 = p + kStreamBlock;
    const uint8_t* p2 = p + 2 * kStreamBlock;
    for (size_t i = 0; i < kStreamBlock; i += 8) {
      c0 = _mm_crc32_u64(c0, Load64(p + i));
      c1 = _mm_crc32_u64(c1, Load64(p1 + i));
      c2 = _mm_crc32_u64(c2, Load64(p2 + i));
    }
    // crc(A||B||C) = shift(shift(cA) ^ cB) ^ cC with raw registers (B, C started at 0).
    c0 = ShiftBlock(ShiftBlock(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1)) ^
         static_cast<uint32_t>(c2);
    p += 3 * kStreamBlock;
    n -= 3 * kStreamBlock;
  }
  while (n >= 8) {
    c0 = _mm_crc32_u64(c0, Load64(p));
    p += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c0);
  while (n--) c = _mm_crc32_u8(c, *p++);
  return c;
}

bool HasSse42() {
#if defined(_MSC_VER) && !defined(__clang__)
  int info[4];
  __cpuid(info, 1);
  return (info[2] & (1 << 20)) != 0;
#else
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & bit_SSE4_2) != 0;
#endif
}
#endif

#if FASTWAL_ARM64
FASTWAL_TARGET_CRC uint32_t ArmRaw(uint32_t c, const uint8_t* p, size_t n) {
  while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
    c = __crc32cb(c, *p++);
    --n;
  }
  while (n >= 3 * kStreamBlock) {
    uint32_t c1 = 0, c2 = 0;
    const uint8_t* p1 = p + kStreamBlock;
    const uint8_t* p2 = p + 2 * kStreamBlock;
    for (size_t i = 0; i < kStreamBlock; i += 8) {
      c = __crc32cd(c, Load64(p + i));
      c1 = __crc32cd(c1, Load64(p1 + i));
      c2 = __crc32cd(c2, Load64(p2 + i));
    }
    c = ShiftBlock(ShiftBlock(c) ^ c1) ^ c2;
    p += 3 * kStreamBlock;
    n -= 3 * kStreamBlock;
  }
  while (n >= 8) {
    c = __crc32cd(c, Load64(p));
    p += 8;
    n -= 8;
  }
  while (n--) c = __crc32cb(c, *p++);
  return c;
}

bool HasArmCrc() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#else
  return true;  // Apple silicon and Windows on ARM64 always implement the CRC32 extension
#endif
}
#endif

using RawFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

struct Impl {
  RawFn fn;
  const char* name;
};

Impl Choose() {
#if FASTWAL_X86
  if (HasSse42()) return {Sse42Raw, "sse4.2"};
#endif
#if FASTWAL_ARM64
  if (HasArmCrc()) return {ArmRaw, "armv8-crc"};
#endif
  return {PortableRaw, "table"};
}

const Impl& GetImpl() {
  static const Impl impl = [] {
    GetTables();  // build before first use on any thread
    return Choose();
  }();
  return impl;
}

}  // namespace

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t size) {
  return ~GetImpl().fn(~crc, data, size);
}

uint32_t Crc32cPortable(uint32_t crc, const uint8_t* data, size_t size) {
  return ~PortableRaw(~crc, data, size);
}

const char* Crc32cImplementation() { return GetImpl().name; }

}  // namespace fastwal
