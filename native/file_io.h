// Blocking file primitives with every error surfaced as an errno value (0 = success).
// Callers decide which thread runs them: the binding runs async variants on the libuv pool.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastwal {

struct IoResult {
  int err;              // 0, or the errno of the failing call
  const char* syscall;  // name of the failing call, for WalError.syscall
  size_t bytes;         // bytes transferred
};

// Writes all of buf at offset, looping over short writes and EINTR.
IoResult WriteAll(int fd, const uint8_t* buf, size_t len, uint64_t offset);

// Flushes file data to stable storage: fdatasync (Linux), F_FULLFSYNC (macOS),
// FlushFileBuffers (Windows).
IoResult DataSync(int fd);

// Reads up to len bytes at offset, looping until len bytes or end of file.
IoResult ReadFull(int fd, uint8_t* buf, size_t len, uint64_t offset);

// Writes zeros over [offset, offset+len): real data blocks, so later writes inside the
// range change neither the file size nor the block map, and fdatasync has no metadata
// to commit.
IoResult ZeroFill(int fd, uint64_t offset, uint64_t len);

// Reads from offset to the end of the file and finds its first non-zero byte: *at is that
// byte's offset, or -1 if only zeros follow; *end is where reading stopped (the end of the
// file, or just past the chunk holding the non-zero byte). One call, however long the run;
// holes the file system reports (SEEK_DATA) are skipped unread.
IoResult FindNonZero(int fd, uint64_t offset, int64_t* at, uint64_t* end);

// The file's size now.
IoResult FileSize(int fd, uint64_t* size);

// Exclusive advisory lock on the whole file, without waiting. err is EWOULDBLOCK (EAGAIN)
// when another open file description holds it. The OS drops it when the process dies.
IoResult TryLock(int fd);
IoResult Unlock(int fd);

// Linux: binds a new close-on-exec Unix socket to the abstract address whose bytes are
// exactly `name` (len bytes: the leading NUL, the name, and any padding the caller wants
// counted; at most sizeof sun_path). The kernel refuses a second bind of the same bytes (err
// EADDRINUSE) and frees the address with the socket, also when the process dies. Elsewhere
// err is ENOSYS. On success *fd is the socket; closing it releases the address.
IoResult BindAbstract(const char* name, size_t len, int* fd);

}  // namespace fastwal
