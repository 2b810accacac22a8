//! A streaming JSON reader for imports: a top-level array of objects or NDJSON (objects
//! separated by whitespace), one flat object at a time, numbers kept as their exact text
//! (never a float), each object's raw text and starting line kept for reject files, and
//! syntax errors located by line and column.

use std::io::Read;

/// A value of a flat object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number exactly as written.
    Number(String),
    String(String),
    /// A nested object or array (never valid for a column; kept to say so).
    Nested(&'static str),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Nested(k) => k,
        }
    }
}

/// One element of the input.
#[derive(Debug, Clone)]
pub enum Item {
    /// An object: its line, fields in order, and raw text.
    Object {
        line: usize,
        fields: Vec<(String, Value)>,
        raw: String,
    },
    /// A well-formed value that is not an object (a row error, not a syntax error).
    NotObject {
        line: usize,
        kind: &'static str,
        raw: String,
    },
}

/// Malformed JSON at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed JSON at line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    Array,
    Lines,
    Done,
}

/// Reads items one at a time from any `Read`.
pub struct Reader<R: Read> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    line: usize,
    col: usize,
    consumed: u64,
    mode: Mode,
    first_in_array: bool,
    capture: Option<Vec<u8>>,
    keep_raw: bool,
    io_error: Option<std::io::Error>,
}

type Res<T> = Result<T, SyntaxError>;

impl<R: Read> Reader<R> {
    pub fn new(src: R) -> Self {
        Reader {
            src,
            buf: vec![0; 256 * 1024],
            pos: 0,
            len: 0,
            eof: false,
            line: 1,
            col: 1,
            consumed: 0,
            mode: Mode::Unknown,
            first_in_array: true,
            capture: None,
            keep_raw: true,
            io_error: None,
        }
    }

    /// Whether items carry their raw text (default true); off saves a copy of every row.
    pub fn keep_raw(&mut self, keep: bool) {
        self.keep_raw = keep;
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// True when the input is NDJSON (known after the first item).
    pub fn is_lines(&self) -> bool {
        self.mode == Mode::Lines
    }

    /// A read error of the underlying source, if one ended the input.
    pub fn take_io_error(&mut self) -> Option<std::io::Error> {
        self.io_error.take()
    }

    fn fill(&mut self) -> bool {
        if self.pos < self.len {
            return true;
        }
        if self.eof {
            return false;
        }
        loop {
            match self.src.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.io_error = Some(e);
                    self.eof = true;
                    return false;
                }
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        if self.pos < self.len || self.fill() {
            Some(self.buf[self.pos])
        } else {
            None
        }
    }

    #[inline]
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        self.consumed += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if c & 0xC0 != 0x80 {
            self.col += 1;
        }
        if self.keep_raw {
            if let Some(cap) = self.capture.as_mut() {
                cap.push(c);
            }
        }
        Some(c)
    }

    fn err<T>(&self, message: impl Into<String>) -> Res<T> {
        Err(SyntaxError {
            line: self.line,
            column: self.col,
            message: message.into(),
        })
    }

    fn unexpected<T>(&mut self, expected: &str) -> Res<T> {
        match self.peek() {
            None => self.err(format!("unexpected end of input, expected {expected}")),
            Some(b'\n') => self.err(format!(
                "unexpected end of line, expected {expected} (in NDJSON each object is on one line)"
            )),
            Some(c) if c.is_ascii_graphic() => {
                self.err(format!("unexpected '{}', expected {expected}", c as char))
            }
            Some(c) => self.err(format!("unexpected byte 0x{c:02x}, expected {expected}")),
        }
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' && self.mode == Mode::Lines && self.capture.is_some() {
                // NDJSON: an object ends on the line it starts.
                break;
            } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.bump();
            } else if c == 0xEF && self.consumed == 0 {
                // A UTF-8 BOM at the very start.
                for _ in 0..3 {
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    /// After a syntax error in NDJSON: skips the rest of the line so reading can go on.
    /// Returns the skipped text.
    pub fn skip_line(&mut self) -> String {
        let mut out = self.capture.take().unwrap_or_default();
        while let Some(c) = self.peek() {
            self.bump();
            if c == b'\n' {
                break;
            }
            out.push(c);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The next item, `Ok(None)` at the end of the input.
    pub fn next_item(&mut self) -> Res<Option<Item>> {
        self.ws();
        match self.mode {
            Mode::Done => {
                if self.peek().is_some() {
                    return self.unexpected("end of input after the closing ']'");
                }
                return Ok(None);
            }
            Mode::Unknown => match self.peek() {
                None => {
                    self.mode = Mode::Done;
                    return Ok(None);
                }
                Some(b'[') => {
                    self.bump();
                    self.mode = Mode::Array;
                    self.ws();
                }
                Some(_) => self.mode = Mode::Lines,
            },
            Mode::Array => {
                if !self.first_in_array {
                    match self.peek() {
                        Some(b',') => {
                            self.bump();
                            self.ws();
                            if self.peek() == Some(b']') {
                                return self.err("trailing comma before ']'");
                            }
                        }
                        Some(b']') => {}
                        _ => return self.unexpected("',' or ']'"),
                    }
                }
            }
            Mode::Lines => {}
        }
        if self.mode == Mode::Array && self.peek() == Some(b']') {
            self.bump();
            self.mode = Mode::Done;
            self.ws();
            if self.peek().is_some() {
                return self.unexpected("end of input after the closing ']'");
            }
            return Ok(None);
        }
        if self.mode == Mode::Lines && self.peek().is_none() {
            return Ok(None);
        }
        self.first_in_array = false;
        let line = self.line;
        self.capture = Some(Vec::with_capacity(if self.keep_raw { 256 } else { 0 }));
        let item = if self.peek() == Some(b'{') {
            let fields = self.object()?;
            let raw = self.take_raw();
            Item::Object { line, fields, raw }
        } else {
            let v = self.value()?;
            let raw = self.take_raw();
            Item::NotObject {
                line,
                kind: v.kind(),
                raw,
            }
        };
        if self.mode == Mode::Lines {
            // NDJSON: the next thing must be on a later line (or the end).
            while let Some(c) = self.peek() {
                match c {
                    b' ' | b'\t' | b'\r' => {
                        self.bump();
                    }
                    b'\n' => break,
                    _ => return self.unexpected("a new line after the object"),
                }
            }
        }
        Ok(Some(item))
    }

    fn take_raw(&mut self) -> String {
        let raw = self.capture.take().unwrap_or_default();
        String::from_utf8(raw)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    fn object(&mut self) -> Res<Vec<(String, Value)>> {
        self.bump(); // {
        let mut fields = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(fields);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.unexpected("a string key");
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return self.unexpected("':'");
            }
            self.bump();
            self.ws();
            let v = self.value()?;
            fields.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.bump();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        return self.err("trailing comma before '}'");
                    }
                }
                Some(b'}') => {
                    self.bump();
                    return Ok(fields);
                }
                _ => return self.unexpected("',' or '}'"),
            }
        }
    }

    fn value(&mut self) -> Res<Value> {
        match self.peek() {
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'{') => {
                self.skip_nested()?;
                Ok(Value::Nested("an object"))
            }
            Some(b'[') => {
                self.skip_nested()?;
                Ok(Value::Nested("an array"))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => Ok(Value::Number(self.number()?)),
            _ => self.unexpected("a value"),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Res<Value> {
        for &b in word.as_bytes() {
            if self.peek() != Some(b) {
                return self.unexpected(&format!("'{word}'"));
            }
            self.bump();
        }
        Ok(v)
    }

    fn skip_nested(&mut self) -> Res<()> {
        let open = self.peek();
        if open == Some(b'{') {
            self.object()?;
            return Ok(());
        }
        self.bump(); // [
        self.ws();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(());
        }
        loop {
            self.ws();
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {
                    self.bump();
                    return Ok(());
                }
                _ => return self.unexpected("',' or ']'"),
            }
        }
    }

    fn number(&mut self) -> Res<String> {
        let mut s = String::new();
        if self.peek() == Some(b'-') {
            s.push('-');
            self.bump();
        }
        match self.peek() {
            Some(b'0') => {
                s.push('0');
                self.bump();
            }
            Some(b'1'..=b'9') => self.digits(&mut s),
            _ => return self.unexpected("a digit"),
        }
        if self.peek() == Some(b'.') {
            s.push('.');
            self.bump();
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.unexpected("a digit after '.'");
            }
            self.digits(&mut s);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            s.push('e');
            self.bump();
            if let Some(c @ (b'+' | b'-')) = self.peek() {
                s.push(c as char);
                self.bump();
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.unexpected("a digit in the exponent");
            }
            self.digits(&mut s);
        }
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.err("leading zeros are not allowed in JSON numbers");
        }
        Ok(s)
    }

    fn digits(&mut self, s: &mut String) {
        while let Some(c @ b'0'..=b'9') = self.peek() {
            s.push(c as char);
            self.bump();
        }
    }

    fn string(&mut self) -> Res<String> {
        self.bump(); // "
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated string");
            };
            match c {
                b'"' => {
                    self.bump();
                    break;
                }
                b'\\' => {
                    self.bump();
                    let Some(e) = self.peek() else {
                        return self.err("unterminated string");
                    };
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.bump();
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.peek() != Some(b'\\') {
                                    return self.err("unpaired surrogate in \\u escape");
                                }
                                self.bump();
                                if self.peek() != Some(b'u') {
                                    return self.err("unpaired surrogate in \\u escape");
                                }
                                self.bump();
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("invalid low surrogate in \\u escape");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            let Some(ch) = char::from_u32(cp) else {
                                return self.err("invalid \\u escape");
                            };
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                            continue;
                        }
                        _ => return self.err(format!("invalid escape '\\{}'", e as char)),
                    };
                    self.bump();
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                0..=0x1F => return self.err("control character in string (escape it)"),
                _ => {
                    // A run of plain bytes (no quote, backslash or control byte, so no
                    // newline) is copied at once from the buffer.
                    let start = self.pos;
                    let end = self.buf[start..self.len]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                        .map_or(self.len, |n| start + n);
                    let chunk = &self.buf[start..end];
                    out.extend_from_slice(chunk);
                    self.col += chunk.iter().filter(|&&b| b & 0xC0 != 0x80).count();
                    if self.keep_raw {
                        if let Some(cap) = self.capture.as_mut() {
                            cap.extend_from_slice(chunk);
                        }
                    }
                    self.consumed += (end - start) as u64;
                    self.pos = end;
                }
            }
        }
        String::from_utf8(out).or_else(|_| self.err("string is not valid UTF-8"))
    }

    fn hex4(&mut self) -> Res<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let Some(c) = self.peek() else {
                return self.err("unterminated \\u escape");
            };
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return self.err("invalid hex digit in \\u escape"),
            };
            v = v * 16 + d as u32;
            self.bump();
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Result<Vec<Item>, SyntaxError> {
        let mut r = Reader::new(s.as_bytes());
        let mut v = Vec::new();
        while let Some(i) = r.next_item()? {
            v.push(i);
        }
        Ok(v)
    }

    #[test]
    fn array_and_lines_give_the_same_objects() {
        let a = all("[\n {\"a\": 1.10, \"b\": \"x\\u00e9\"},\n {\"a\": null}\n]\n").unwrap();
        let l = all("{\"a\": 1.10, \"b\": \"x\\u00e9\"}\n{\"a\": null}\n").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(l.len(), 2);
        match (&a[0], &l[1]) {
            (Item::Object { line, fields, raw }, Item::Object { line: l2, .. }) => {
                assert_eq!(*line, 2);
                assert_eq!(*l2, 2);
                assert_eq!(fields[0], ("a".into(), Value::Number("1.10".into())));
                assert_eq!(fields[1], ("b".into(), Value::String("xé".into())));
                assert_eq!(raw, "{\"a\": 1.10, \"b\": \"x\\u00e9\"}");
            }
            _ => panic!(),
        }
    }

    #[test]
    fn numbers_are_exact_text() {
        let v = all("{\"q\": 12345678901.123456789012, \"e\": -1.5E-3}").unwrap();
        let Item::Object { fields, .. } = &v[0] else {
            panic!()
        };
        assert_eq!(
            fields[0].1,
            Value::Number("12345678901.123456789012".into())
        );
        assert_eq!(fields[1].1, Value::Number("-1.5e-3".into()));
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = all("[\n {\"a\": 1},\n {\"a\" 2}\n]").unwrap_err();
        assert_eq!((e.line, e.column), (3, 7), "{e}");
        let e = all("{\"a\": 1}\n{\"a\": tru}\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = all("{\"a\": 1,\n\"b\": 2}\n").unwrap_err();
        assert!(e.message.contains("end of line"), "{e}");
        assert!(all("[{\"a\":1},]").is_err());
        assert!(all("[{\"a\":1}").is_err());
        assert!(all("{\"a\":01}").is_err());
        assert!(all("{\"a\":\"x").is_err());
        assert!(all("[{}] x").is_err());
        assert!(all("{\"a\":1} {\"b\":2}").is_err());
    }

    #[test]
    fn nested_and_non_objects() {
        let v = all("[{\"a\": {\"b\": [1,2]}}, 5]").unwrap();
        let Item::Object { fields, .. } = &v[0] else {
            panic!()
        };
        assert_eq!(fields[0].1, Value::Nested("an object"));
        assert!(matches!(
            v[1],
            Item::NotObject {
                kind: "a number",
                ..
            }
        ));
    }

    #[test]
    fn empty_inputs() {
        assert!(all("").unwrap().is_empty());
        assert!(all("[]").unwrap().is_empty());
        assert!(all("\u{feff}[ ]\n").unwrap().is_empty());
    }

    #[test]
    fn skip_line_recovers_in_ndjson() {
        let mut r = Reader::new("{\"a\": 1}\n{\"a\": x}\n{\"a\": 3}\n".as_bytes());
        assert!(r.next_item().unwrap().is_some());
        let e = r.next_item().unwrap_err();
        assert_eq!(e.line, 2);
        let skipped = r.skip_line();
        assert_eq!(skipped, "{\"a\": x}");
        let Item::Object { line, .. } = r.next_item().unwrap().unwrap() else {
            panic!()
        };
        assert_eq!(line, 3);
        assert!(r.next_item().unwrap().is_none());
    }
}
