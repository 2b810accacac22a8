//! The one compression step of every container payload (backups and archive exports):
//! zstd, gzip (flate2) or none, as a streaming encoder and decoder with constant memory.
//! The codec is recorded in the container's content label; labels written before zstd
//! existed mean gzip.

use std::io::{self, BufRead, Read, Write};

/// Content label of backups, by codec. `pg_dump-custom+gzip` is what every backup written
/// before this setting existed carries.
const BACKUP_GZIP: &str = "pg_dump-custom+gzip";
const BACKUP_ZSTD: &str = "pg_dump-custom+zstd";
const BACKUP_NONE: &str = "pg_dump-custom+none";
/// Content label of exported archive months; the bare label (all exports written before
/// this setting existed) means gzip.
const EXPORT_GZIP: &str = "opsctl archive month";
const EXPORT_ZSTD: &str = "opsctl archive month+zstd";
const EXPORT_NONE: &str = "opsctl archive month+none";

/// Default codec (`Codec::default()`, zstd) and levels: measured in benches/README.md
/// (2026-12-02), zstd 3 writes a smaller file than gzip 3 with less CPU and restores at
/// least as fast.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
pub const DEFAULT_GZIP_LEVEL: i32 = 3;

/// A compression algorithm (what a reader needs to know).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Zstd,
    Gzip,
    None,
}

/// A codec and its level (what a writer needs to know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub codec: Codec,
    /// zstd 1–19, gzip 1–9; 0 for none.
    pub level: i32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            codec: Codec::Zstd,
            level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::None => "none",
        }
    }

    /// The valid levels, for messages and checks.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Codec::Zstd => 1..=19,
            Codec::Gzip => 1..=9,
            Codec::None => 0..=0,
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            Codec::Zstd => DEFAULT_ZSTD_LEVEL,
            Codec::Gzip => DEFAULT_GZIP_LEVEL,
            Codec::None => 0,
        }
    }

    /// The content label of a backup written with this codec.
    pub fn backup_content(self) -> &'static str {
        match self {
            Codec::Zstd => BACKUP_ZSTD,
            Codec::Gzip => BACKUP_GZIP,
            Codec::None => BACKUP_NONE,
        }
    }

    /// The codec of a backup's content label, or `None` when it is not a backup.
    pub fn from_backup_content(label: &str) -> Option<Codec> {
        match label {
            BACKUP_ZSTD => Some(Codec::Zstd),
            BACKUP_GZIP => Some(Codec::Gzip),
            BACKUP_NONE => Some(Codec::None),
            _ => None,
        }
    }

    /// The content label of an exported archive month written with this codec.
    pub fn export_content(self) -> &'static str {
        match self {
            Codec::Zstd => EXPORT_ZSTD,
            Codec::Gzip => EXPORT_GZIP,
            Codec::None => EXPORT_NONE,
        }
    }

    /// The codec of an export's content label, or `None` when it is not an export.
    pub fn from_export_content(label: &str) -> Option<Codec> {
        match label {
            EXPORT_ZSTD => Some(Codec::Zstd),
            EXPORT_GZIP => Some(Codec::Gzip),
            EXPORT_NONE => Some(Codec::None),
            _ => None,
        }
    }

    /// A streaming decoder over `input` (constant memory; concatenated gzip members or
    /// zstd frames are read as one stream).
    pub fn decoder<'a, R: BufRead + 'a>(self, input: R) -> io::Result<Decoder<'a, R>> {
        Ok(match self {
            Codec::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(input)?),
            Codec::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(input))),
            Codec::None => Decoder::None(input),
        })
    }
}

impl Compression {
    /// Checks a codec and an optional level (the codec's default when absent).
    pub fn new(codec: Codec, level: Option<i32>) -> Result<Compression, String> {
        let level = level.unwrap_or_else(|| codec.default_level());
        let range = codec.levels();
        if !range.contains(&level) {
            return Err(match codec {
                Codec::None => format!(
                    "compression_level {level} with compression = \"none\": leave the level out"
                ),
                _ => format!(
                    "compression_level {level} is out of range for {}: use {} to {}",
                    codec.name(),
                    range.start(),
                    range.end()
                ),
            });
        }
        Ok(Compression { codec, level })
    }

    /// A streaming encoder writing into `out`; `finish` ends the stream.
    pub fn encoder<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        Ok(match self.codec {
            Codec::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, self.level)?),
            Codec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(self.level as u32),
            )),
            Codec::None => Encoder::None(out),
        })
    }

    /// The level as recorded in summaries (none for `none`).
    pub fn recorded_level(self) -> Option<i32> {
        (self.codec != Codec::None).then_some(self.level)
    }
}

/// The writing side of a [`Compression`].
pub enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Writes the end of the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// The reading side of a [`Codec`].
pub enum Decoder<'a, R: BufRead> {
    Zstd(zstd::stream::read::Decoder<'a, R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    None(R),
}

impl<R: BufRead> Decoder<'_, R> {
    /// The input, e.g. to read what follows the compressed stream.
    pub fn into_inner(self) -> R {
        match self {
            Decoder::Zstd(d) => d.finish(),
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::None(r) => r,
        }
    }
}

impl<R: BufRead> Read for Decoder<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::None(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: Compression) {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut e = c.encoder(Vec::new()).unwrap();
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        if c.codec != Codec::None {
            assert!(
                z.len() < data.len() / 4,
                "{:?} compressed to {}",
                c,
                z.len()
            );
        }
        let mut out = Vec::new();
        c.codec
            .decoder(io::BufReader::new(&z[..]))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn every_codec_round_trips() {
        round_trip(Compression::default());
        round_trip(Compression::new(Codec::Gzip, Some(6)).unwrap());
        round_trip(Compression::new(Codec::None, None).unwrap());
    }

    #[test]
    fn old_labels_mean_gzip() {
        assert_eq!(
            Codec::from_backup_content("pg_dump-custom+gzip"),
            Some(Codec::Gzip)
        );
        assert_eq!(
            Codec::from_export_content("opsctl archive month"),
            Some(Codec::Gzip)
        );
        assert_eq!(Codec::from_backup_content("opsctl archive month"), None);
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::new(Codec::Zstd, Some(20)).is_err());
        assert!(Compression::new(Codec::Gzip, Some(0)).is_err());
        assert!(Compression::new(Codec::None, Some(3)).is_err());
        assert_eq!(Compression::new(Codec::Gzip, None).unwrap().level, 3);
    }
}
