import type { Backend, NonZero, ScanChunk } from './backend.js'
import type { NativeAddon } from './native-addon.js'

type RawScan = [number, number, number, number, Float64Array]

function chunk(r: RawScan): ScanChunk {
  return { bytes: r[0], status: r[1], stop: r[2], need: r[3], index: r[4] }
}

function nonZero(r: [number, number]): NonZero {
  return { at: r[0], end: r[1] }
}

/** The C++ hot path (native/): encoding, CRC32C, write+fdatasync and read+scan. */
export function nativeBackend(addon: NativeAddon): Backend {
  return {
    kind: 'native',
    crc32c: (data, seed) => addon.crc32c(data, seed),
    encodeRecord: addon.encodeRecord,
    encodeBatch: addon.encodeBatch,
    encodeCheckpoint: addon.encodeCheckpoint,
    scan: (buf, start, end) => chunk(addon.scan(buf, start, end)),
    findNextRecord: addon.findNextRecord,
    readScan: (fd, buf, position) => addon.readScan(fd, buf, position).then(chunk),
    readScanBlocking: (fd, buf, position) => chunk(addon.readScanBlocking(fd, buf, position)),
    write: (fd, buf, offset, length, position, dataSync, publish) =>
      publish ? addon.write(fd, buf, offset, length, position, dataSync, publish.fd, publish.bytes) : addon.write(fd, buf, offset, length, position, dataSync),
    publishesAfterSync: true,
    writeBlocking: addon.writeBlocking,
    fdatasync: addon.fdatasync,
    fdatasyncBlocking: addon.fdatasyncBlocking,
    findNonZero: (fd, position) => addon.findNonZero(fd, position).then(nonZero),
    findNonZeroBlocking: (fd, position) => nonZero(addon.findNonZeroBlocking(fd, position)),
    zeroFill: addon.zeroFill,
    zeroFillBlocking: addon.zeroFillBlocking,
  }
}
