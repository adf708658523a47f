//! Byte-level rewrites of captured command payloads: the statement id of COM_STMT_* commands,
//! the schema of COM_INIT_DB and of a leading `USE db` statement under `--db-map`.
//!
//! Every function leaves the payload untouched (same `Bytes`, no copy) when nothing changes and
//! works on bytes: SQL need not be UTF-8. Nothing here decides *whether* to rewrite.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

/// The statement id of a COM_STMT_* payload (bytes 1..5, little-endian).
pub fn stmt_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `payload` with its statement id set to `id`: the same buffer when it already holds `id`,
/// else a copy with the 4 bytes patched. `None` when the payload is too short to hold an id.
pub fn with_stmt_id(payload: &Bytes, id: u32) -> Option<Bytes> {
    let old = stmt_id(payload)?;
    if old == id {
        return Some(payload.clone());
    }
    let mut b = BytesMut::from(&payload[..]);
    b[1..5].copy_from_slice(&id.to_le_bytes());
    Some(b.freeze())
}

fn mapped<'a>(map: &'a HashMap<String, String>, name: &[u8]) -> Option<&'a str> {
    let name = std::str::from_utf8(name).ok()?;
    map.get(name).map(String::as_str).filter(|t| *t != name)
}

/// COM_INIT_DB payload with its schema mapped; `None` when the schema is not in the map.
pub fn map_init_db(payload: &Bytes, map: &HashMap<String, String>) -> Option<Bytes> {
    let test = mapped(map, payload.get(1..)?)?;
    let mut b = BytesMut::with_capacity(1 + test.len());
    b.put_u8(payload[0]);
    b.put_slice(test.as_bytes());
    Some(b.freeze())
}

/// A byte of an unquoted MySQL identifier (`[0-9a-zA-Z$_]` and any non-ASCII byte).
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'$' || c == b'_' || c >= 0x80
}

/// Index after leading whitespace and plain `/* ... */` comments (not `/*!` ones).
fn skip_blanks(sql: &[u8], mut i: usize) -> usize {
    loop {
        while sql.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        if sql.get(i..i + 2) == Some(b"/*") && sql.get(i + 2) != Some(&b'!') {
            match sql[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(p) => i += 2 + p + 2,
                None => return i,
            }
        } else {
            return i;
        }
    }
}

/// The database a statement text that starts with `USE` names: (start, end, unescaped name,
/// quoted) where start..end is the identifier as written.
fn use_target(sql: &[u8]) -> Option<(usize, usize, Vec<u8>, bool)> {
    let i = skip_blanks(sql, 0);
    if !sql.get(i..i + 3)?.eq_ignore_ascii_case(b"use") {
        return None;
    }
    let after = *sql.get(i + 3)?;
    if !(after.is_ascii_whitespace() || after == b'`' || after == b'/') {
        return None;
    }
    let start = skip_blanks(sql, i + 3);
    if sql.get(start) == Some(&b'`') {
        let mut name = Vec::new();
        let mut j = start + 1;
        loop {
            match sql.get(j)? {
                b'`' if sql.get(j + 1) == Some(&b'`') => {
                    name.push(b'`');
                    j += 2;
                }
                b'`' => return Some((start, j + 1, name, true)),
                &c => {
                    name.push(c);
                    j += 1;
                }
            }
        }
    }
    let end = start + sql[start..].iter().take_while(|&&c| is_ident(c)).count();
    (end > start).then(|| (start, end, sql[start..end].to_vec(), false))
}

/// COM_QUERY payload whose statement text (at `sql_at`) starts with `USE db` for a mapped `db`,
/// with the name replaced (the rest of the text kept as is); `None` otherwise.
pub fn map_use(payload: &Bytes, sql_at: usize, map: &HashMap<String, String>) -> Option<Bytes> {
    if map.is_empty() {
        return None;
    }
    let sql = payload.get(sql_at..)?;
    let (start, end, name, quoted) = use_target(sql)?;
    let test = mapped(map, &name)?;
    let bare = !quoted
        && !test.is_empty()
        && !test.bytes().all(|c| c.is_ascii_digit())
        && test.bytes().all(is_ident);
    let mut b = BytesMut::with_capacity(payload.len() + test.len() + 2);
    b.put_slice(&payload[..sql_at + start]);
    if bare {
        b.put_slice(test.as_bytes());
    } else {
        b.put_u8(b'`');
        b.put_slice(test.replace('`', "``").as_bytes());
        b.put_u8(b'`');
    }
    b.put_slice(&payload[sql_at + end..]);
    Some(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn stmt_id_copy_on_write() {
        let p = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
        let same = with_stmt_id(&p, 1).unwrap();
        assert_eq!(
            same.as_ptr(),
            p.as_ptr(),
            "no copy when the id does not change"
        );
        let new = with_stmt_id(&p, 0x0102_0304).unwrap();
        assert_eq!(&new[..], &[0x17, 4, 3, 2, 1, 0, 1, 0, 0, 0]);
        assert_eq!(stmt_id(&new), Some(0x0102_0304));
        assert_eq!(with_stmt_id(&Bytes::from_static(&[0x19, 1, 0]), 2), None);
    }

    #[test]
    fn init_db() {
        let m = map(&[("prod", "test"), ("中文", "测试")]);
        let p = Bytes::from_static(b"\x02prod");
        assert_eq!(&map_init_db(&p, &m).unwrap()[..], b"\x02test");
        assert!(map_init_db(&Bytes::from_static(b"\x02other"), &m).is_none());
        let cjk = Bytes::from("\u{2}中文".to_string());
        assert_eq!(&map_init_db(&cjk, &m).unwrap()[..], "\u{2}测试".as_bytes());
        assert!(map_init_db(&Bytes::from_static(b"\x02\xff\xfe"), &m).is_none());
    }

    fn q(sql: &[u8], m: &HashMap<String, String>) -> Option<Vec<u8>> {
        let mut p = vec![3u8];
        p.extend_from_slice(sql);
        map_use(&Bytes::from(p), 1, m).map(|b| b[1..].to_vec())
    }

    #[test]
    fn use_statements() {
        let m = map(&[("prod", "test"), ("数据库", "测试库"), ("a`b", "c")]);
        assert_eq!(q(b"USE prod", &m).unwrap(), b"USE test");
        assert_eq!(q(b"  use\t`prod` ;", &m).unwrap(), b"  use\t`test` ;");
        assert_eq!(
            q(b"/* x */ Use prod; select 1", &m).unwrap(),
            b"/* x */ Use test; select 1"
        );
        assert_eq!(q(b"USE`prod`", &m).unwrap(), b"USE`test`");
        assert_eq!(
            q("USE `数据库`".as_bytes(), &m).unwrap(),
            "USE `测试库`".as_bytes()
        );
        assert_eq!(
            q("use 数据库".as_bytes(), &m).unwrap(),
            "use 测试库".as_bytes()
        );
        assert_eq!(q(b"USE `a``b`", &m).unwrap(), b"USE `c`");
        assert_eq!(q(b"USE produce", &m), None);
        assert_eq!(q(b"USER prod", &m), None);
        assert_eq!(q(b"SELECT 1; USE prod", &m), None);
        assert_eq!(q(b"USE `prod", &m), None);
        // Not UTF-8 (GBK bytes): left alone, never a panic.
        assert_eq!(q(b"USE \xca\xfd\xbe\xdd", &m), None);
        let to_odd = map(&[("p", "my-db")]);
        assert_eq!(q(b"use p", &to_odd).unwrap(), b"use `my-db`");
    }
}
