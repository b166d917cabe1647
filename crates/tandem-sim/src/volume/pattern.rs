//! Self-describing data: every 512-byte sector an application write puts
//! on a volume names the write and the sector, so any copy can be checked
//! for which write it holds.

use bytes::Bytes;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
const MAGIC: u64 = 0x7A6E_D3E5_0000_0000;

fn word(writer: u64, sector: u64) -> u64 {
    ((writer << 24) | (sector & 0xFF_FFFF)) ^ MAGIC
}

/// The data write `writer` puts at `offset` (sector-aligned) for `len`
/// bytes.
pub fn data(writer: u64, offset: u64, len: u64) -> Bytes {
    let mut v = Vec::with_capacity(len as usize);
    for s in offset / SECTOR..(offset + len) / SECTOR {
        let w = word(writer, s).to_le_bytes();
        for _ in 0..SECTOR / 8 {
            v.extend_from_slice(&w);
        }
    }
    Bytes::from(v)
}

/// Which write sector `s` of `bytes` (one sector) holds: 0 for never
/// written, `u64::MAX` for anything else (torn or foreign data).
pub fn writer_of(s: u64, bytes: &[u8]) -> u64 {
    if bytes.iter().all(|b| *b == 0) {
        return 0;
    }
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    let v = first ^ MAGIC;
    let (writer, sector) = (v >> 24, v & 0xFF_FFFF);
    let whole = bytes
        .chunks(8)
        .all(|c| c.len() == 8 && u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) == first);
    if whole && sector == s & 0xFF_FFFF {
        writer
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_sectors() {
        let d = data(7, 1024, 1024);
        assert_eq!(writer_of(2, &d[..512]), 7);
        assert_eq!(writer_of(3, &d[512..]), 7);
        assert_eq!(writer_of(3, &d[..512]), u64::MAX, "wrong sector");
        let mut torn = d[..512].to_vec();
        torn[100] ^= 1;
        assert_eq!(writer_of(2, &torn), u64::MAX);
        assert_eq!(writer_of(9, &[0; 512]), 0);
    }
}
