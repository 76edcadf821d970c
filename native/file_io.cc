#include "file_io.h"

#include <cerrno>
#include <cstring>
#include <memory>

#ifdef _WIN32
#include <io.h>
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#ifdef __linux__
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#endif

namespace fastwal {

#ifdef _WIN32
namespace {
HANDLE ToHandle(int fd) { return reinterpret_cast<HANDLE>(_get_osfhandle(fd)); }
int LastErrno() {
  switch (GetLastError()) {
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL: return ENOSPC;
    case ERROR_LOCK_VIOLATION: return EWOULDBLOCK;
    case ERROR_INVALID_HANDLE: return EBADF;
    case ERROR_ACCESS_DENIED: return EACCES;
    default: return EIO;
  }
}
OVERLAPPED At(uint64_t offset) {
  OVERLAPPED ov{};
  ov.Offset = static_cast<DWORD>(offset & 0xFFFFFFFFu);
  ov.OffsetHigh = static_cast<DWORD>(offset >> 32);
  return ov;
}
}  // namespace

IoResult WriteAll(int fd, const uint8_t* buf, size_t len, uint64_t offset) {
  HANDLE h = ToHandle(fd);
  size_t done = 0;
  while (done < len) {
    DWORD chunk = static_cast<DWORD>(len - done > 0x40000000 ? 0x40000000 : len - done);
    OVERLAPPED ov = At(offset + done);
    DWORD wrote = 0;
    if (!WriteFile(h, buf + done, chunk, &wrote, &ov)) return {LastErrno(), "write", done};
    if (wrote == 0) return {EIO, "write", done};
    done += wrote;
  }
  return {0, nullptr, done};
}

IoResult DataSync(int fd) {
  if (!FlushFileBuffers(ToHandle(fd))) return {LastErrno(), "FlushFileBuffers", 0};
  return {0, nullptr, 0};
}

IoResult ReadFull(int fd, uint8_t* buf, size_t len, uint64_t offset) {
  HANDLE h = ToHandle(fd);
  size_t done = 0;
  while (done < len) {
    DWORD chunk = static_cast<DWORD>(len - done > 0x40000000 ? 0x40000000 : len - done);
    OVERLAPPED ov = At(offset + done);
    DWORD got = 0;
    if (!ReadFile(h, buf + done, chunk, &got, &ov)) {
      if (GetLastError() == ERROR_HANDLE_EOF) break;
      return {LastErrno(), "read", done};
    }
    if (got == 0) break;
    done += got;
  }
  return {0, nullptr, done};
}

IoResult FileSize(int fd, uint64_t* size) {
  LARGE_INTEGER n;
  if (!GetFileSizeEx(ToHandle(fd), &n)) return {LastErrno(), "fstat", 0};
  *size = static_cast<uint64_t>(n.QuadPart);
  return {0, nullptr, 0};
}

IoResult TryLock(int fd) {
  OVERLAPPED ov{};
  if (!LockFileEx(ToHandle(fd), LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, MAXDWORD,
                  MAXDWORD, &ov))
    return {LastErrno(), "LockFileEx", 0};
  return {0, nullptr, 0};
}

IoResult Unlock(int fd) {
  OVERLAPPED ov{};
  if (!UnlockFileEx(ToHandle(fd), 0, MAXDWORD, MAXDWORD, &ov)) return {LastErrno(), "UnlockFileEx", 0};
  return {0, nullptr, 0};
}

#else  // POSIX

IoResult WriteAll(int fd, const uint8_t* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return {errno, "write", done};
    }
    if (n == 0) return {EIO, "write", done};  // no progress and no error: do not spin
    done += static_cast<size_t>(n);
  }
  return {0, nullptr, done};
}

IoResult DataSync(int fd) {
#if defined(__APPLE__)
  // fsync on macOS does not flush the drive's cache; F_FULLFSYNC does. Some file
  // systems (network, FUSE) refuse it: fall back to fsync there.
  if (fcntl(fd, F_FULLFSYNC) == 0) return {0, nullptr, 0};
  if (errno != ENOTSUP && errno != EINVAL) return {errno, "fcntl(F_FULLFSYNC)", 0};
  while (fsync(fd) != 0) {
    if (errno != EINTR) return {errno, "fsync", 0};
  }
  return {0, nullptr, 0};
#else
  // Not retried on failure other than EINTR: after a failed fdatasync the kernel may have
  // dropped the dirty pages, so a second call could "succeed" without the data.
  int rc;
  do {
    rc = fdatasync(fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return {errno, "fdatasync", 0};
  return {0, nullptr, 0};
#endif
}

IoResult ReadFull(int fd, uint8_t* buf, size_t len, uint64_t offset) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return {errno, "read", done};
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return {0, nullptr, done};
}

IoResult FileSize(int fd, uint64_t* size) {
  struct stat st;
  if (fstat(fd, &st) != 0) return {errno, "fstat", 0};
  *size = static_cast<uint64_t>(st.st_size);
  return {0, nullptr, 0};
}

IoResult TryLock(int fd) {
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return {errno, "flock", 0};
  return {0, nullptr, 0};
}

IoResult Unlock(int fd) {
  int rc;
  do {
    rc = flock(fd, LOCK_UN);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return {errno, "flock", 0};
  return {0, nullptr, 0};
}

#endif

#ifdef __linux__
IoResult BindAbstract(const char* name, size_t len, int* fd) {
  sockaddr_un addr;
  std::memset(&addr, 0, sizeof addr);
  if (len < 2 || name[0] != '\0' || len > sizeof addr.sun_path) return {EINVAL, "bind", 0};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name, len);
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return {errno, "socket", 0};
  // bind(2) on a Unix socket does not fail with EINTR (it blocks on nothing).
  if (bind(s, reinterpret_cast<const sockaddr*>(&addr), static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len)) != 0) {
    const int err = errno;
    static_cast<void>(close(s));  // a socket that never bound: nothing to report
    return {err, "bind", 0};
  }
  *fd = s;
  return {0, nullptr, 0};
}
#else
IoResult BindAbstract(const char*, size_t, int* fd) {
  *fd = -1;
  return {ENOSYS, "bind", 0};
}
#endif

// Where the next data (not a hole) at or after pos starts: pos itself where the file system
// cannot tell, -1 if only a hole follows (its bytes read as zeros).
#if defined(SEEK_DATA) && !defined(_WIN32)
int64_t NextData(int fd, uint64_t pos) {
  const off_t d = lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
  if (d >= 0) return d > static_cast<off_t>(pos) ? static_cast<int64_t>(d) : static_cast<int64_t>(pos);
  return errno == ENXIO ? -1 : static_cast<int64_t>(pos);  // ENXIO: no data at or after pos
}
#else
int64_t NextData(int, uint64_t pos) { return static_cast<int64_t>(pos); }
#endif

IoResult FindNonZero(int fd, uint64_t offset, int64_t* at, uint64_t* end) {
  static const uint8_t kZeros[64 * 1024] = {};
  // One reused chunk: zeros are checked and dropped. On the heap, since the pool threads'
  // stacks are small.
  std::unique_ptr<uint8_t[]> buf(new uint8_t[sizeof kZeros]);
  *at = -1;
  uint64_t pos = offset;
  for (;;) {
    // Holes (a segment sized by ftruncate) are zeros without reading them.
    const int64_t data = NextData(fd, pos);
    if (data < 0) {
      const IoResult r = FileSize(fd, end);
      if (!r.err && *end < pos) *end = pos;  // shrunk meanwhile: nothing after pos
      return r;
    }
    pos = static_cast<uint64_t>(data);
    const IoResult r = ReadFull(fd, buf.get(), sizeof kZeros, pos);
    if (r.err) {
      *end = pos;
      return r;
    }
    if (std::memcmp(buf.get(), kZeros, r.bytes) != 0) {
      size_t i = 0;
      while (buf[i] == 0) i++;  // memcmp found a difference within r.bytes
      *at = static_cast<int64_t>(pos + i);
      *end = pos + r.bytes;
      return {0, nullptr, 0};
    }
    pos += r.bytes;
    if (r.bytes < sizeof kZeros) break;  // end of file
  }
  *end = pos;
  return {0, nullptr, 0};
}

IoResult ZeroFill(int fd, uint64_t offset, uint64_t len) {
  static const uint8_t kZeros[64 * 1024] = {};
  uint64_t done = 0;
  while (done < len) {
    size_t chunk = static_cast<size_t>(len - done < sizeof kZeros ? len - done : sizeof kZeros);
    IoResult r = WriteAll(fd, kZeros, chunk, offset + done);
    if (r.err) return {r.err, r.syscall, static_cast<size_t>(done + r.bytes)};
    done += chunk;
  }
  return {0, nullptr, static_cast<size_t>(done)};
}

}  // namespace fastwal
