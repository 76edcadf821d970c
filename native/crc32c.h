// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and LevelDB.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastwal {

// Extends `crc` (the value returned for the preceding bytes; 0 to start) over data.
// Chooses the hardware path once, at first use.
uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t size);

// The portable table path, exposed so tests and the fuzzer can compare against it.
uint32_t Crc32cPortable(uint32_t crc, const uint8_t* data, size_t size);

// Name of the implementation Crc32c() uses on this CPU ("sse4.2", "armv8-crc", "table").
const char* Crc32cImplementation();

}  // namespace fastwal
