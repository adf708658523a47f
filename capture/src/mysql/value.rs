//! Binary-protocol values and the checked byte reader the MySQL decoders share.
//!
//! [`Reader`] is a zero-copy cursor whose every read is bounds-checked; [`read_value`] decodes one
//! COM_STMT_EXECUTE parameter of a given `MYSQL_TYPE_*`, and [`write_value`] is its inverse (for
//! tests and round-trips). Nothing here allocates except to copy out byte values.

use crate::event::Value;

/// Decoding errors of the binary protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the field needs.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field with an impossible value.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Column type codes (`MYSQL_TYPE_*`).
pub mod types {
    /// DECIMAL.
    pub const DECIMAL: u8 = 0;
    /// TINYINT.
    pub const TINY: u8 = 1;
    /// SMALLINT.
    pub const SHORT: u8 = 2;
    /// INT.
    pub const LONG: u8 = 3;
    /// FLOAT.
    pub const FLOAT: u8 = 4;
    /// DOUBLE.
    pub const DOUBLE: u8 = 5;
    /// NULL.
    pub const NULL: u8 = 6;
    /// TIMESTAMP.
    pub const TIMESTAMP: u8 = 7;
    /// BIGINT.
    pub const LONGLONG: u8 = 8;
    /// MEDIUMINT.
    pub const INT24: u8 = 9;
    /// DATE.
    pub const DATE: u8 = 10;
    /// TIME.
    pub const TIME: u8 = 11;
    /// DATETIME.
    pub const DATETIME: u8 = 12;
    /// YEAR.
    pub const YEAR: u8 = 13;
    /// NEWDATE (internal).
    pub const NEWDATE: u8 = 14;
    /// VARCHAR.
    pub const VARCHAR: u8 = 15;
    /// BIT.
    pub const BIT: u8 = 16;
    /// TIMESTAMP2.
    pub const TIMESTAMP2: u8 = 17;
    /// DATETIME2.
    pub const DATETIME2: u8 = 18;
    /// TIME2.
    pub const TIME2: u8 = 19;
    /// JSON.
    pub const JSON: u8 = 245;
    /// NEWDECIMAL.
    pub const NEWDECIMAL: u8 = 246;
    /// ENUM.
    pub const ENUM: u8 = 247;
    /// SET.
    pub const SET: u8 = 248;
    /// TINYBLOB.
    pub const TINY_BLOB: u8 = 249;
    /// MEDIUMBLOB.
    pub const MEDIUM_BLOB: u8 = 250;
    /// LONGBLOB.
    pub const LONG_BLOB: u8 = 251;
    /// BLOB.
    pub const BLOB: u8 = 252;
    /// VARBINARY/VARCHAR.
    pub const VAR_STRING: u8 = 253;
    /// CHAR/BINARY.
    pub const STRING: u8 = 254;
    /// GEOMETRY.
    pub const GEOMETRY: u8 = 255;
}

/// A bounds-checked cursor over a payload.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Take `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    /// Little-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Little-endian u24.
    pub fn u24(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(3, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Little-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Little-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Length-encoded integer (`None` for the 0xFB NULL marker).
    pub fn lenenc(&mut self, what: &'static str) -> Result<Option<u64>, WireError> {
        match self.u8(what)? {
            0xfb => Ok(None),
            0xfc => Ok(Some(u64::from(self.u16(what)?))),
            0xfd => Ok(Some(u64::from(self.u24(what)?))),
            0xfe => Ok(Some(self.u64(what)?)),
            0xff => Err(WireError::Invalid(what)),
            b => Ok(Some(u64::from(b))),
        }
    }

    /// Length-encoded integer that must not be NULL.
    pub fn lenenc_int(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.lenenc(what)?.ok_or(WireError::Invalid(what))
    }

    /// Length-encoded string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let n = self.lenenc_int(what)?;
        let n = usize::try_from(n).map_err(|_| WireError::Invalid(what))?;
        self.take(n, what)
    }

    /// NUL-terminated string (or the rest when no NUL).
    pub fn nul_str(&mut self) -> &'a [u8] {
        match memchr::memchr(0, self.buf) {
            Some(i) => {
                let s = &self.buf[..i];
                self.buf = &self.buf[i + 1..];
                s
            }
            None => std::mem::take(&mut self.buf),
        }
    }
}

/// Append a length-encoded integer.
pub fn write_lenenc(out: &mut Vec<u8>, v: u64) {
    if v < 0xfb {
        out.push(v as u8);
    } else if v <= 0xffff {
        out.push(0xfc);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= 0xff_ffff {
        out.push(0xfd);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn read_date(r: &mut Reader<'_>) -> Result<Value, WireError> {
    let n = r.u8("date length")?;
    if !matches!(n, 0 | 4 | 7 | 11) {
        return Err(WireError::Invalid("date length"));
    }
    let b = r.take(usize::from(n), "date")?;
    let mut d = Value::Date {
        year: 0,
        month: 0,
        day: 0,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    };
    if let Value::Date {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    } = &mut d
    {
        if n >= 4 {
            *year = u16::from_le_bytes([b[0], b[1]]);
            *month = b[2];
            *day = b[3];
        }
        if n >= 7 {
            *hour = b[4];
            *minute = b[5];
            *second = b[6];
        }
        if n == 11 {
            *micros = u32::from_le_bytes([b[7], b[8], b[9], b[10]]);
        }
    }
    Ok(d)
}

fn read_time(r: &mut Reader<'_>) -> Result<Value, WireError> {
    let n = r.u8("time length")?;
    if !matches!(n, 0 | 8 | 12) {
        return Err(WireError::Invalid("time length"));
    }
    let b = r.take(usize::from(n), "time")?;
    if n == 0 {
        return Ok(Value::Time {
            negative: false,
            days: 0,
            hours: 0,
            minutes: 0,
            seconds: 0,
            micros: 0,
        });
    }
    Ok(Value::Time {
        negative: b[0] == 1,
        days: u32::from_le_bytes([b[1], b[2], b[3], b[4]]),
        hours: b[5],
        minutes: b[6],
        seconds: b[7],
        micros: if n == 12 {
            u32::from_le_bytes([b[8], b[9], b[10], b[11]])
        } else {
            0
        },
    })
}

/// Decode one binary-protocol value of column type `ty`.
pub fn read_value(r: &mut Reader<'_>, ty: u8, unsigned: bool) -> Result<Value, WireError> {
    use types::*;
    Ok(match ty {
        NULL => Value::Null,
        TINY => {
            let b = r.u8("tiny")?;
            if unsigned {
                Value::UInt(u64::from(b))
            } else {
                Value::Int(i64::from(b as i8))
            }
        }
        SHORT | YEAR => {
            let v = r.u16("short")?;
            if unsigned || ty == YEAR {
                Value::UInt(u64::from(v))
            } else {
                Value::Int(i64::from(v as i16))
            }
        }
        LONG | INT24 => {
            let v = r.u32("long")?;
            if unsigned {
                Value::UInt(u64::from(v))
            } else {
                Value::Int(i64::from(v as i32))
            }
        }
        LONGLONG => {
            let v = r.u64("longlong")?;
            if unsigned {
                Value::UInt(v)
            } else {
                Value::Int(v as i64)
            }
        }
        FLOAT => Value::Float(f32::from_bits(r.u32("float")?)),
        DOUBLE => Value::Double(f64::from_bits(r.u64("double")?)),
        DATE | DATETIME | TIMESTAMP | NEWDATE | TIMESTAMP2 | DATETIME2 => read_date(r)?,
        TIME | TIME2 => read_time(r)?,
        DECIMAL | NEWDECIMAL | VARCHAR | BIT | JSON | ENUM | SET | TINY_BLOB | MEDIUM_BLOB
        | LONG_BLOB | BLOB | VAR_STRING | STRING | GEOMETRY => {
            Value::Bytes(r.lenenc_bytes("string value")?.into())
        }
        _ => return Err(WireError::Invalid("column type")),
    })
}

/// Encode one value as the binary protocol sends it for column type `ty`.
pub fn write_value(out: &mut Vec<u8>, ty: u8, v: &Value) {
    use types::*;
    match v {
        Value::Null => {}
        Value::Int(_) | Value::UInt(_) => {
            let raw: u64 = match v {
                Value::Int(i) => *i as u64,
                Value::UInt(u) => *u,
                _ => 0,
            };
            match ty {
                TINY => out.push(raw as u8),
                SHORT | YEAR => out.extend_from_slice(&(raw as u16).to_le_bytes()),
                LONG | INT24 => out.extend_from_slice(&(raw as u32).to_le_bytes()),
                _ => out.extend_from_slice(&raw.to_le_bytes()),
            }
        }
        Value::Float(f) => out.extend_from_slice(&f.to_bits().to_le_bytes()),
        Value::Double(d) => out.extend_from_slice(&d.to_bits().to_le_bytes()),
        Value::Bytes(b) => {
            write_lenenc(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micros,
        } => {
            out.push(11);
            out.extend_from_slice(&year.to_le_bytes());
            out.extend_from_slice(&[*month, *day, *hour, *minute, *second]);
            out.extend_from_slice(&micros.to_le_bytes());
        }
        Value::Time {
            negative,
            days,
            hours,
            minutes,
            seconds,
            micros,
        } => {
            out.push(12);
            out.push(u8::from(*negative));
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&[*hours, *minutes, *seconds]);
            out.extend_from_slice(&micros.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_forms() {
        for v in [
            0u64,
            250,
            251,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            write_lenenc(&mut b, v);
            assert_eq!(Reader::new(&b).lenenc_int("x"), Ok(v));
        }
        assert_eq!(Reader::new(&[0xfb]).lenenc("x"), Ok(None));
        assert!(Reader::new(&[0xfc, 1]).lenenc("x").is_err());
    }

    #[test]
    fn temporal_short_forms() {
        let mut r = Reader::new(&[4, 0xe8, 0x07, 2, 29]);
        assert_eq!(
            read_value(&mut r, types::DATE, false),
            Ok(Value::Date {
                year: 2024,
                month: 2,
                day: 29,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0
            })
        );
        let mut r = Reader::new(&[8, 1, 2, 0, 0, 0, 3, 4, 5]);
        assert_eq!(
            read_value(&mut r, types::TIME, false),
            Ok(Value::Time {
                negative: true,
                days: 2,
                hours: 3,
                minutes: 4,
                seconds: 5,
                micros: 0
            })
        );
        assert!(read_value(&mut Reader::new(&[5, 0, 0, 0, 0, 0]), types::DATE, false).is_err());
    }
}
