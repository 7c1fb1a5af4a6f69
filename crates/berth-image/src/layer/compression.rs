//! Detecting and undoing the compression of a layer stream (gzip, zstd, or none).

use std::io::{self, BufReader, Read};

/// How a layer blob is compressed, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Buffer used in front of an uncompressed stream, so the tar parser's 512-byte header reads do
/// not each become a read of the underlying source.
const PLAIN_BUFFER: usize = 64 * 1024;

impl Compression {
    /// Recognises gzip (`1f 8b`) and zstd (`28 b5 2f fd`) by their magic numbers; anything else,
    /// including too few bytes, is [`Compression::None`].
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if magic.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Peeks at the first bytes of `r` and returns a reader of the decompressed stream plus which
/// compression it was. The peeked bytes are not lost: they are replayed in front of the rest of
/// the stream. Short reads are retried until enough bytes for the magic have arrived (or EOF),
/// so a source that dribbles out one byte at a time is still detected correctly.
pub fn decompressed<'a, R: Read + 'a>(mut r: R) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let mut magic = [0u8; ZSTD_MAGIC.len()];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let compression = Compression::detect(&magic[..n]);
    let stream = io::Cursor::new(magic).take(n as u64).chain(r);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(BufReader::with_capacity(PLAIN_BUFFER, stream)),
        // Both decoders put their own BufReader in front of `stream`.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
    };
    Ok((reader, compression))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Hands out at most one byte per read call.
    struct Dribble<'a>(&'a [u8]);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn read_all(r: &mut dyn Read) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn detect_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 0x08, 0x00]), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x1f, 0x8b]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0x00]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f]), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
        assert_eq!(Compression::detect(b"etc/passwd\0\0"), Compression::None);
    }

    #[test]
    fn plain_stream_passes_through_unchanged() {
        let data = sample();
        let (mut r, c) = decompressed(&data[..]).unwrap();
        assert_eq!(c, Compression::None);
        assert_eq!(read_all(&mut r), data);
    }

    #[test]
    fn gzip_stream_is_decompressed() {
        let data = sample();
        let blob = gzip(&data);
        let (mut r, c) = decompressed(&blob[..]).unwrap();
        assert_eq!(c, Compression::Gzip);
        assert_eq!(read_all(&mut r), data);
    }

    #[test]
    fn multi_member_gzip_is_read_to_the_end() {
        let mut blob = gzip(b"hello ");
        blob.extend(gzip(b"world"));
        let (mut r, c) = decompressed(&blob[..]).unwrap();
        assert_eq!(c, Compression::Gzip);
        assert_eq!(read_all(&mut r), b"hello world");
    }

    #[test]
    fn zstd_stream_is_decompressed() {
        let data = sample();
        let blob = zstd(&data);
        let (mut r, c) = decompressed(&blob[..]).unwrap();
        assert_eq!(c, Compression::Zstd);
        assert_eq!(read_all(&mut r), data);
    }

    #[test]
    fn short_reads_do_not_lose_or_misdetect_bytes() {
        let data = sample();
        for (blob, want) in [
            (data.clone(), Compression::None),
            (gzip(&data), Compression::Gzip),
            (zstd(&data), Compression::Zstd),
        ] {
            let (mut r, c) = decompressed(Dribble(&blob)).unwrap();
            assert_eq!(c, want);
            assert_eq!(read_all(&mut r), data);
        }
    }

    #[test]
    fn tiny_and_empty_streams() {
        let (mut r, c) = decompressed(&b""[..]).unwrap();
        assert_eq!(c, Compression::None);
        assert!(read_all(&mut r).is_empty());
        let (mut r, c) = decompressed(&b"ab"[..]).unwrap();
        assert_eq!(c, Compression::None);
        assert_eq!(read_all(&mut r), b"ab");
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut blob = gzip(&sample());
        let n = blob.len();
        blob.truncate(n / 2);
        let (mut r, _) = decompressed(&blob[..]).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
