//! Per-table row counts and order-independent checksums read from an uncompressed
//! pg_dump custom-format stream as it passes through (manifest v4: no second scan).
//!
//! The stream is a header, the table of contents (dump id → schema and table of each
//! `TABLE DATA` entry), then data blocks: a type byte (1 table data, 3 large objects),
//! the dump id, and length-prefixed chunks ending with a zero length. A table's chunks
//! are its `COPY … TO STDOUT` text, one row per `\n`-terminated line. Each line is
//! hashed with xxh3-64 and the hashes are added modulo 2^64, so the checksum does not
//! depend on row order; [`LineSum`] does the same for the drill's own `COPY` output.
//! The end-of-data marker pg_dump adds (`\.` and two empty lines) is not a row.
//! Only the header and table of contents are buffered; a row split across chunks or
//! reads is the only other data copied.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

/// Rows and checksum of a stream of COPY text lines.
#[derive(Debug, Default, Clone)]
pub struct LineSum {
    rows: i64,
    sum: u64,
    partial: Vec<u8>,
    /// In a dump: pg_dump ends a table's data with `\.` and two empty lines, which
    /// are not rows (a row's text never is `\.`: COPY writes a backslash as `\\`).
    in_dump: bool,
    ended: bool,
}

impl LineSum {
    pub fn new() -> Self {
        Self::default()
    }

    fn for_dump() -> Self {
        LineSum {
            in_dump: true,
            ..Self::default()
        }
    }

    /// Adds COPY text; lines may be split anywhere between calls.
    pub fn feed(&mut self, mut data: &[u8]) {
        while let Some(i) = memchr::memchr(b'\n', data) {
            if self.partial.is_empty() {
                self.line(&data[..i]);
            } else {
                self.partial.extend_from_slice(&data[..i]);
                let p = std::mem::take(&mut self.partial);
                self.line(&p);
                self.partial = p;
                self.partial.clear();
            }
            data = &data[i + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8]) {
        if self.in_dump && (self.ended || line == b"\\.") {
            self.ended = true;
            return;
        }
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxh3_64(line));
    }

    /// Row count and checksum (16 hex digits). An unterminated last line counts as a row.
    pub fn finish(mut self) -> (i64, String) {
        if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            self.line(&p);
        }
        (self.rows, format!("xxh3sum:{:016x}", self.sum))
    }
}

/// One table's data as found in the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedTable {
    pub schema: String,
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

#[derive(Debug)]
enum State {
    /// Header and table of contents not complete yet (all bytes so far kept).
    Head(Vec<u8>),
    BlockType,
    BlockId(u8),
    ChunkLen {
        blob: bool,
    },
    Chunk {
        left: usize,
        blob: bool,
    },
    BlobOid,
    Failed(String),
}

/// The streaming scanner: [`DumpScan::feed`] every byte of the dump in order, then
/// [`DumpScan::finish`].
#[derive(Debug)]
pub struct DumpScan {
    state: State,
    int_size: usize,
    int_buf: Vec<u8>,
    names: Names,
    current: Option<(i64, LineSum)>,
    done: Vec<ScannedTable>,
    bytes: u64,
    /// Buffered head size at which to try parsing it again.
    head_try: usize,
}

impl Default for DumpScan {
    fn default() -> Self {
        Self::new()
    }
}

/// The archive versions this parser reads (pg_dump 12 to 17 write 1.14 to 1.16).
const MIN_VERSION: (u8, u8) = (1, 12);
const MAX_VERSION: (u8, u8) = (1, 16);
/// Header and table of contents larger than this are not buffered (a schema of a
/// million objects takes a few hundred MB; ours take well under 1 MB).
const MAX_HEAD: usize = 512 << 20;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

impl DumpScan {
    pub fn new() -> Self {
        DumpScan {
            state: State::Head(Vec::new()),
            int_size: 4,
            int_buf: Vec::with_capacity(9),
            names: HashMap::new(),
            current: None,
            done: Vec::new(),
            bytes: 0,
            head_try: 0,
        }
    }

    /// Feeds the next bytes of the dump. After an error the rest is ignored and
    /// [`DumpScan::finish`] reports it.
    pub fn feed(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Err(e) = self.step(data, false) {
            self.state = State::Failed(e);
        }
    }

    /// The tables found, in dump order, or why the stream could not be read.
    pub fn finish(mut self) -> Result<Vec<ScannedTable>, String> {
        if let State::Head(_) = self.state {
            if let Err(e) = self.step(&[], true) {
                self.state = State::Failed(e);
            }
        }
        match self.state {
            State::BlockType if self.int_buf.is_empty() => Ok(self.done),
            State::Failed(e) => Err(e),
            State::Head(_) => Err(format!(
                "the dump ended within its header or table of contents ({} bytes)",
                self.bytes
            )),
            _ => Err(format!(
                "the dump ended within a data block ({} bytes)",
                self.bytes
            )),
        }
    }

    fn step(&mut self, mut data: &[u8], at_end: bool) -> Result<(), String> {
        if let State::Head(buf) = &mut self.state {
            buf.extend_from_slice(data);
            if buf.len() > MAX_HEAD {
                return Err(format!(
                    "no end of the table of contents within the first {MAX_HEAD} bytes"
                ));
            }
            // Parse again only once the buffer has doubled (or at the end): linear time
            // for a table of contents of any size.
            if !at_end && buf.len() < self.head_try {
                return Ok(());
            }
            match parse_head(buf)? {
                None => {
                    self.head_try = buf.len() * 2;
                    return Ok(());
                }
                Some((int_size, names, used)) => {
                    let rest = std::mem::take(buf).split_off(used);
                    self.int_size = int_size;
                    self.names = names;
                    self.state = State::BlockType;
                    return self.step_data(&rest);
                }
            }
        }
        if let State::Failed(_) = self.state {
            data = &[];
        }
        self.step_data(data)
    }

    /// Reads a sign byte and `int_size` little-endian bytes, possibly across calls.
    fn take_int(&mut self, data: &mut &[u8]) -> Option<i64> {
        let need = 1 + self.int_size;
        let n = (need - self.int_buf.len()).min(data.len());
        self.int_buf.extend_from_slice(&data[..n]);
        *data = &data[n..];
        if self.int_buf.len() < need {
            return None;
        }
        let v = decode_int(&self.int_buf);
        self.int_buf.clear();
        Some(v)
    }

    fn step_data(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.state {
                State::Head(_) | State::Failed(_) => return Ok(()),
                State::BlockType => {
                    let t = data[0];
                    data = &data[1..];
                    if t != BLK_DATA && t != BLK_BLOBS {
                        return Err(format!(
                            "unexpected data block type {t} at byte {} of the dump",
                            self.bytes as usize - data.len() - 1
                        ));
                    }
                    self.state = State::BlockId(t);
                }
                State::BlockId(t) => {
                    let Some(id) = self.take_int(&mut data) else {
                        continue;
                    };
                    if t == BLK_DATA {
                        if !self.names.contains_key(&id) {
                            return Err(format!(
                                "a data block for dump id {id}, which the table of contents \
                                 does not list as TABLE DATA"
                            ));
                        }
                        self.current = Some((id, LineSum::for_dump()));
                        self.state = State::ChunkLen { blob: false };
                    } else {
                        self.state = State::BlobOid;
                    }
                }
                State::BlobOid => {
                    let Some(oid) = self.take_int(&mut data) else {
                        continue;
                    };
                    self.state = if oid == 0 {
                        State::BlockType
                    } else {
                        State::ChunkLen { blob: true }
                    };
                }
                State::ChunkLen { blob } => {
                    let Some(len) = self.take_int(&mut data) else {
                        continue;
                    };
                    if len < 0 {
                        return Err(format!("a negative chunk length {len} in the dump"));
                    }
                    if len > 0 {
                        self.state = State::Chunk {
                            left: len as usize,
                            blob,
                        };
                    } else if blob {
                        self.state = State::BlobOid;
                    } else {
                        let (id, sum) = self.current.take().expect("in a table block");
                        let (schema, table) = self.names[&id].clone();
                        let (rows, checksum) = sum.finish();
                        self.done.push(ScannedTable {
                            schema,
                            table,
                            rows,
                            checksum,
                        });
                        self.state = State::BlockType;
                    }
                }
                State::Chunk { left, blob } => {
                    let n = left.min(data.len());
                    if !blob {
                        if let Some((_, sum)) = &mut self.current {
                            sum.feed(&data[..n]);
                        }
                    }
                    data = &data[n..];
                    self.state = if n == left {
                        State::ChunkLen { blob }
                    } else {
                        State::Chunk {
                            left: left - n,
                            blob,
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

fn decode_int(b: &[u8]) -> i64 {
    let mut v: i64 = 0;
    for (i, byte) in b[1..].iter().enumerate() {
        v |= (*byte as i64) << (8 * i);
    }
    if b[0] != 0 {
        -v
    } else {
        v
    }
}

/// A cursor over the buffered head; `None` from a read means "need more bytes".
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
    int_size: usize,
    version: (u8, u8),
}

impl Cur<'_> {
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn byte(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn int(&mut self) -> Option<i64> {
        let n = 1 + self.int_size;
        self.bytes(n).map(decode_int)
    }
    /// A string; `Some(None)` is pg_dump's NULL string (length -1).
    fn str(&mut self) -> Option<Option<String>> {
        let l = self.int()?;
        if l < 0 {
            return Some(None);
        }
        let s = self.bytes(l as usize)?;
        Some(Some(String::from_utf8_lossy(s).into_owned()))
    }
    fn at_least(&self, v: (u8, u8)) -> bool {
        self.version >= v
    }
}

/// dump id → (schema, table) of each TABLE DATA entry.
type Names = HashMap<i64, (String, String)>;
/// Integer size, the names, and how many bytes header and table of contents took.
type Head = (usize, Names, usize);

/// Parses header and table of contents (`ReadHead`/`ReadToc` in pg_backup_archiver.c).
/// `Ok(None)`: more bytes are needed.
fn parse_head(b: &[u8]) -> Result<Option<Head>, String> {
    if b.len() < 11 {
        return Ok(None);
    }
    if &b[..5] != b"PGDMP" {
        return Err("the dump does not start with PGDMP: not a pg_dump custom archive".into());
    }
    let version = (b[5], b[6]);
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(format!(
            "pg_dump archive version {}.{}.{} is not one this build reads ({}.{} to {}.{})",
            b[5], b[6], b[7], MIN_VERSION.0, MIN_VERSION.1, MAX_VERSION.0, MAX_VERSION.1
        ));
    }
    let int_size = b[8] as usize;
    let off_size = b[9] as usize;
    if !(1..=8).contains(&int_size) || !(1..=16).contains(&off_size) {
        return Err(format!(
            "pg_dump archive with int size {int_size}, offset size {off_size}"
        ));
    }
    if b[10] != 1 {
        return Err(format!(
            "pg_dump archive format {} is not the custom format",
            b[10]
        ));
    }
    let mut c = Cur {
        b,
        pos: 11,
        int_size,
        version,
    };
    Ok(parse_rest(&mut c, off_size)?.map(|names| (int_size, names, c.pos)))
}

fn parse_rest(c: &mut Cur, off_size: usize) -> Result<Option<Names>, String> {
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let compressed = if c.at_least((1, 15)) {
        need!(c.byte()) as i64
    } else {
        need!(c.int())
    };
    if compressed != 0 {
        return Err(
            "the pg_dump archive is compressed; checksums need pg_dump --compress=0".into(),
        );
    }
    for _ in 0..7 {
        need!(c.int()); // creation date
    }
    for _ in 0..3 {
        need!(c.str()); // database name, server version, pg_dump version
    }
    let count = need!(c.int());
    let mut names = HashMap::new();
    for _ in 0..count.max(0) {
        let dump_id = need!(c.int());
        need!(c.int()); // had dumper
        need!(c.str()); // table oid
        need!(c.str()); // oid
        let tag = need!(c.str());
        let desc = need!(c.str());
        need!(c.int()); // section
        need!(c.str()); // definition
        need!(c.str()); // drop statement
        need!(c.str()); // copy statement
        let namespace = need!(c.str());
        need!(c.str()); // tablespace
        if c.at_least((1, 14)) {
            need!(c.str()); // table access method
        }
        if c.at_least((1, 16)) {
            need!(c.int()); // relkind
        }
        need!(c.str()); // owner
        need!(c.str()); // "with oids"
        loop {
            if need!(c.str()).is_none() {
                break; // end of the dependency list
            }
        }
        need!(c.bytes(1 + off_size)); // data offset (flag byte and offset)
        if desc.as_deref() == Some("TABLE DATA") {
            names.insert(
                dump_id,
                (namespace.unwrap_or_default(), tag.unwrap_or_default()),
            );
        }
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a small custom-format stream the way pg_dump 15 (archive 1.14) does.
    struct Out(Vec<u8>);
    impl Out {
        fn int(&mut self, v: i64) {
            self.0.push(u8::from(v < 0));
            self.0
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn str(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    fn archive(entries: &[(i64, &str, &str, &str)], blocks: &[(u8, i64, Vec<&[u8]>)]) -> Vec<u8> {
        let mut o = Out(b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec());
        o.int(0);
        for v in [1, 2, 3, 4, 5, 126, 0] {
            o.int(v);
        }
        for s in ["db", "15.4", "15.4"] {
            o.str(Some(s));
        }
        o.int(entries.len() as i64);
        for (id, desc, ns, tag) in entries {
            o.int(*id);
            o.int(1);
            o.str(Some("0"));
            o.str(Some("0"));
            o.str(Some(tag));
            o.str(Some(desc));
            o.int(3);
            o.str(Some(""));
            o.str(Some(""));
            o.str(Some("COPY x FROM stdin;\n"));
            o.str(Some(ns));
            o.str(Some(""));
            o.str(Some("heap"));
            o.str(Some("postgres"));
            o.str(Some("false"));
            o.str(Some("7"));
            o.str(None);
            o.0.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        for (t, id, chunks) in blocks {
            o.0.push(*t);
            o.int(*id);
            if *t == BLK_BLOBS {
                o.int(16400);
            }
            for ch in chunks {
                o.int(ch.len() as i64);
                o.0.extend_from_slice(ch);
            }
            o.int(0);
            if *t == BLK_BLOBS {
                o.int(0);
            }
        }
        o.0
    }

    fn expected(text: &[u8]) -> (i64, String) {
        let mut s = LineSum::new();
        s.feed(text);
        s.finish()
    }

    fn scan_in_pieces(bytes: &[u8], piece: usize) -> Result<Vec<ScannedTable>, String> {
        let mut s = DumpScan::new();
        for p in bytes.chunks(piece) {
            s.feed(p);
        }
        s.finish()
    }

    #[test]
    fn rows_split_across_chunks_and_reads_give_the_same_sums() {
        let rows_text = b"1\tone\n2\ta\\tb\\\\c\\nd\n3\t\\N\n";
        let a = b"1\tone\n2\ta\\tb\\\\c\\nd\n3\t\\N\n\\.\n\n\n";
        let dump = archive(
            &[
                (5, "TABLE", "public", "t"),
                (9, "TABLE DATA", "public", "t"),
                (10, "TABLE DATA", "s", "empty"),
                (11, "BLOBS", "", "BLOBS"),
            ],
            &[
                // A chunk boundary in the middle of the second line.
                (BLK_DATA, 9, vec![&a[..9], &a[9..]]),
                (BLK_DATA, 10, vec![b"\\.\n\n\n"]),
                (BLK_BLOBS, 11, vec![b"\x00\n\n binary"]),
            ],
        );
        let (rows, checksum) = expected(rows_text);
        assert_eq!(rows, 3);
        for piece in [1, 2, 3, 7, 64, dump.len()] {
            let got = scan_in_pieces(&dump, piece).unwrap();
            assert_eq!(
                got,
                vec![
                    ScannedTable {
                        schema: "public".into(),
                        table: "t".into(),
                        rows,
                        checksum: checksum.clone(),
                    },
                    ScannedTable {
                        schema: "s".into(),
                        table: "empty".into(),
                        rows: 0,
                        checksum: expected(b"").1,
                    },
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn order_independent_but_value_sensitive() {
        assert_eq!(expected(b"1\ta\n2\tb\n"), expected(b"2\tb\n1\ta\n"));
        assert_ne!(expected(b"1\t10.5\n"), expected(b"1\t10.6\n"));
        // A duplicated row counts: sums, not xor, so pairs do not cancel.
        assert_ne!(expected(b"1\n1\n").1, expected(b"").1);
        assert_eq!(expected(b"").1, "xxh3sum:0000000000000000");
    }

    #[test]
    fn a_truncated_dump_or_a_compressed_one_is_an_error() {
        let a = b"1\n";
        let dump = archive(
            &[(9, "TABLE DATA", "public", "t")],
            &[(BLK_DATA, 9, vec![a])],
        );
        // The final block ends exactly at the end of the stream: fine.
        assert!(scan_in_pieces(&dump, 5).is_ok());
        let cut = scan_in_pieces(&dump[..dump.len() - 2], 5).unwrap_err();
        assert!(cut.contains("ended within a data block"), "{cut}");
        let head = scan_in_pieces(&dump[..40], 5).unwrap_err();
        assert!(head.contains("table of contents"), "{head}");
        let mut z = dump.clone();
        z[12] = 6; // compression level 6
        assert!(scan_in_pieces(&z, 1000).unwrap_err().contains("compress"));
        assert!(scan_in_pieces(b"not a dump at all", 4)
            .unwrap_err()
            .contains("PGDMP"));
    }
}
