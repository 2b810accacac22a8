//! The one sealed-file pipeline: bytes → compressor → AES-256-GCM STREAM container →
//! repository sink (a local temporary file renamed into place, or a multipart upload
//! completed at the end), and back: repository → authenticated decryption → decompressor.
//! Backups, archive exports, WAL segments and base backups all go through it.

use std::io::{self, BufReader, Read, Write};

use crate::backup::compress::{Codec, Compression, Decoder, Encoder};
use crate::backup::format::{Reader, Writer};
use crate::backup::keys::KeyMaterial;
use crate::error::Error;

use super::{Repository, Sink};

/// Writes one sealed object; nothing is visible until [`SealedWriter::finish`].
pub struct SealedWriter {
    enc: Encoder<Writer<Box<dyn Sink>>>,
    key_ids: Vec<String>,
    file_id: String,
}

impl SealedWriter {
    /// Starts `key` in `repo`: a fresh data key wrapped by each of `keys`, the header
    /// labelled `content`, the body compressed with `compression`.
    pub fn create(
        repo: &Repository,
        key: &str,
        keys: &[KeyMaterial],
        content: &str,
        compression: Compression,
    ) -> Result<SealedWriter, Error> {
        let sink = repo.create(key)?;
        Self::over(sink, keys, content, compression)
    }

    /// The same over a sink the caller made.
    pub fn over(
        sink: Box<dyn Sink>,
        keys: &[KeyMaterial],
        content: &str,
        compression: Compression,
    ) -> Result<SealedWriter, Error> {
        let w = Writer::new(sink, keys, content)?;
        let key_ids = w.header().key_ids();
        let file_id = w.header().file_id_hex();
        let enc = compression
            .encoder(w)
            .map_err(Error::io("cannot start the compressor"))?;
        Ok(SealedWriter {
            enc,
            key_ids,
            file_id,
        })
    }

    /// The key ids of the slots in the header.
    pub fn key_ids(&self) -> &[String] {
        &self.key_ids
    }

    /// The random file id in the header (hex).
    pub fn file_id(&self) -> &str {
        &self.file_id
    }

    /// Ends the compressed stream, seals `trailer` after it, and commits the object;
    /// returns the bytes stored.
    pub fn finish(self, trailer: &[u8]) -> Result<u64, Error> {
        let w = self
            .enc
            .finish()
            .map_err(Error::io("cannot finish the compressed stream"))?;
        let (sink, n) = w.finish(trailer)?;
        sink.commit()?;
        Ok(n)
    }

    /// Discards the object (the temporary file is removed, the upload aborted).
    pub fn abort(self) {
        if let Ok(w) = self.enc.finish() {
            if let Ok((sink, _)) = w.finish(&[]) {
                sink.abort();
            }
        }
    }
}

impl Write for SealedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.enc.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }
}

/// The authenticated, decrypted (still compressed) stream of an object.
pub type Sealed = Reader<BufReader<Box<dyn Read + Send>>>;

/// Opens `key` in `repo` with one of `keys` (the header is authenticated; each chunk is
/// as it is read; [`Reader::finish`] returns the trailer and checks the end).
pub fn open(repo: &Repository, key: &str, keys: &[KeyMaterial]) -> Result<Sealed, Error> {
    let inp = repo.open(key)?;
    Ok(Reader::open(BufReader::with_capacity(1 << 20, inp), keys)?)
}

/// The decompressed stream of an opened object.
pub fn decompress(
    sealed: Sealed,
    codec: Codec,
) -> Result<Decoder<'static, BufReader<Sealed>>, Error> {
    codec
        .decoder(BufReader::with_capacity(256 * 1024, sealed))
        .map_err(Error::io("cannot start the decompressor"))
}

/// Reads a decompressed stream to its end and returns the container's trailer (the
/// authentication of the last chunk and of the end of the file included).
pub fn finish(dec: Decoder<'static, BufReader<Sealed>>) -> Result<Vec<u8>, Error> {
    let mut dec = dec;
    io::copy(&mut dec, &mut io::sink()).map_err(Error::io("cannot read the sealed file"))?;
    Ok(dec.into_inner().into_inner().finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::compress::Codec;

    #[test]
    fn a_sealed_object_round_trips_and_is_invisible_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local("local", dir.path());
        let keys = vec![KeyMaterial::Key(zeroize::Zeroizing::new([7u8; 32]))];
        for codec in [Codec::Zstd, Codec::Gzip, Codec::None] {
            let key = format!("x/{}.bin", codec.name());
            let mut w = SealedWriter::create(
                &repo,
                &key,
                &keys,
                "test",
                Compression::new(codec, None).unwrap(),
            )
            .unwrap();
            let body: Vec<u8> = (0..300_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect();
            w.write_all(&body).unwrap();
            assert!(!repo.exists(&key).unwrap());
            w.finish(b"trailer").unwrap();
            let mut dec = decompress(open(&repo, &key, &keys).unwrap(), codec).unwrap();
            let mut back = Vec::new();
            dec.read_to_end(&mut back).unwrap();
            assert_eq!(back, body);
            assert_eq!(finish(dec).unwrap(), b"trailer");
            assert!(open(
                &repo,
                &key,
                &[KeyMaterial::Key(zeroize::Zeroizing::new([8u8; 32]))]
            )
            .is_err());
        }
        let w = SealedWriter::create(&repo, "x/gone", &keys, "t", Compression::default()).unwrap();
        w.abort();
        assert!(!repo.exists("x/gone").unwrap());
    }
}
