//! Sizes for people, in IEC units (KiB, MiB, GiB: powers of 1024), the one formatter every
//! text output uses. JSON keeps sizes as numbers of bytes.

/// A byte count of any integer or float type.
pub trait ByteCount: Copy {
    fn as_f64(self) -> f64;
}

macro_rules! byte_count {
    ($($t:ty),*) => {$(
        impl ByteCount for $t {
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
byte_count!(i32, i64, u32, u64, usize, f64);

/// "512 B", "1.5 KiB", "2.0 GiB" (negative sizes, e.g. a shrink, keep their sign).
pub fn human_bytes(b: impl ByteCount) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let b = b.as_f64();
    let mut v = b;
    let mut i = 0;
    while v.abs() >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    // 1023.96 KiB would print as "1024.0 KiB": one unit up instead.
    if i > 0 && i < UNITS.len() - 1 && (v.abs() * 10.0).round() >= 10240.0 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", b.round() as i64)
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn iec_units() {
        assert_eq!(human_bytes(0i64), "0 B");
        assert_eq!(human_bytes(1023u64), "1023 B");
        assert_eq!(human_bytes(1024i64), "1.0 KiB");
        assert_eq!(human_bytes(1536u64), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024i64), "10.0 MiB");
        assert_eq!(human_bytes(1024f64 * 1024.0 - 1.0), "1.0 MiB");
        assert_eq!(human_bytes(3 * (1u64 << 40)), "3.0 TiB");
        assert_eq!(human_bytes(-2048i64), "-2.0 KiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}
