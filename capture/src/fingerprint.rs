//! Query fingerprints as pt-query-digest users know them, and their stable 64-bit ids.
//!
//! [`Fingerprinter::fingerprint`] applies pt-query-digest's rewriting rules in a few linear passes
//! over bytes (no regex, no SQL parser): comments dropped, quoted strings, numbers, booleans and
//! NULL to `?`, whitespace squeezed, lowercased, IN/VALUES lists collapsed to `(?+)`, LIMIT forms
//! folded, multi-row INSERTs cut after the first row, `USE db` to `use ?`, `CALL p(...)` to
//! `call p`, ASC dropped after ORDER BY. [`fingerprint_id`] is the low 64 bits of the MD5 that
//! pt-query-digest prints as the Query ID. UNION folding is not done.

use md5::{Digest, Md5};

/// Reusable fingerprinting buffers (no allocation per call once warm).
#[derive(Debug, Default)]
pub struct Fingerprinter {
    a: Vec<u8>,
    b: Vec<u8>,
    out: String,
}

#[inline]
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)
}

fn starts_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

fn find_ci(s: &[u8], p: &[u8], from: usize) -> Option<usize> {
    (from..=s.len().saturating_sub(p.len()))
        .find(|&i| s.len() >= i + p.len() && s[i..i + p.len()].eq_ignore_ascii_case(p))
}

/// `word` at `i` with word boundaries on both sides.
fn word_at(s: &[u8], i: usize, word: &[u8]) -> bool {
    starts_with_ci(&s[i..], word)
        && (i == 0 || !is_word(s[i - 1]))
        && s.get(i + word.len()).is_none_or(|&c| !is_word(c))
}

impl Fingerprinter {
    /// The fingerprint of `sql`, valid until the next call.
    pub fn fingerprint(&mut self, sql: &[u8]) -> &str {
        self.a.clear();
        self.a.extend_from_slice(sql);
        if starts_with_ci(&self.a, b"administrator command: ") {
            return self.finish_a();
        }
        if let Some(call) = call_name(&self.a) {
            self.b.clear();
            self.b.extend_from_slice(call);
            self.b.make_ascii_lowercase();
            std::mem::swap(&mut self.a, &mut self.b);
            return self.finish_a();
        }
        shorten_multi_insert(&mut self.a);
        // A pass whose trigger byte is nowhere in the text leaves it as it is: skipped (no pass
        // adds these bytes; later letters come from the text, lower-cased).
        let has = |c: u8| self.a.contains(&c);
        let (comments, escapes) = (has(b'#') || has(b'-') || has(b'/'), has(b'\\'));
        let (dquote, squote, paren) = (has(b'"'), has(b'\''), has(b'('));
        let by = has(b'y') || has(b'Y');
        if comments {
            self.pass(strip_comments);
        }
        if is_use(&self.a) {
            self.a.clear();
            self.a.extend_from_slice(b"use ?");
            return self.finish_a();
        }
        if escapes {
            self.pass(strip_escaped_quotes);
        }
        if dquote {
            self.pass(|i, o| quoted_to_placeholder(i, o, b'"'));
        }
        if squote {
            self.pass(|i, o| quoted_to_placeholder(i, o, b'\''));
        }
        self.pass(booleans);
        self.pass(numbers);
        self.pass(prefixed_placeholders);
        self.pass(squeeze_whitespace);
        self.a.make_ascii_lowercase();
        self.pass(nulls);
        if paren {
            self.pass(collapse_lists);
        }
        self.pass(fold_limit);
        if by {
            self.pass(drop_order_asc);
        }
        self.finish_a()
    }

    fn pass(&mut self, f: impl FnOnce(&[u8], &mut Vec<u8>)) {
        self.b.clear();
        f(&self.a, &mut self.b);
        std::mem::swap(&mut self.a, &mut self.b);
    }

    fn finish_a(&mut self) -> &str {
        self.out.clear();
        self.out.push_str(&String::from_utf8_lossy(&self.a));
        &self.out
    }
}

fn call_name(s: &[u8]) -> Option<&[u8]> {
    let start = s.iter().position(|&c| !is_space(c))?;
    let t = &s[start..];
    if !starts_with_ci(t, b"call") {
        return None;
    }
    let mut i = 4;
    let ws = t[i..].iter().take_while(|&&c| is_space(c)).count();
    if ws == 0 {
        return None;
    }
    i += ws;
    let name = t[i..].iter().take_while(|&&c| !is_space(c)).count();
    if name == 0 {
        return None;
    }
    let name_end = i + name;
    let paren = t[i..name_end].iter().rposition(|&c| c == b'(')?;
    if paren == 0 {
        return None;
    }
    Some(&t[..i + paren])
}

fn shorten_multi_insert(s: &mut Vec<u8>) {
    let head = if starts_with_ci(s, b"insert") {
        6
    } else if starts_with_ci(s, b"replace") {
        7
    } else {
        return;
    };
    let Some(values) = find_ci(s, b"values", head) else {
        return;
    };
    let mut i = values + 6;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    if s.get(i) != Some(&b'(') {
        return;
    }
    let Some(close) = s[i..].iter().position(|&c| c == b')').map(|p| p + i) else {
        return;
    };
    let mut j = close + 1;
    while j < s.len() && is_space(s[j]) {
        j += 1;
    }
    if s.get(j) != Some(&b',') {
        return;
    }
    j += 1;
    while j < s.len() && is_space(s[j]) {
        j += 1;
    }
    if s.get(j) == Some(&b'(') {
        s.truncate(close + 1);
    }
}

fn strip_comments(s: &[u8], o: &mut Vec<u8>) {
    // Searches remember their answer so that a text of many unclosed comment openers stays linear.
    let mut no_close_after = usize::MAX;
    let mut stop = None::<usize>;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'/'
            && s.get(i + 1) == Some(&b'*')
            && s.get(i + 2).is_some_and(|&c| c != b'!')
            && i + 3 < no_close_after
        {
            match s[i + 3..].windows(2).position(|w| w == b"*/") {
                Some(end) => {
                    i = i + 3 + end + 2;
                    continue;
                }
                None => no_close_after = i + 3,
            }
        }
        let olc = (s[i] == b'-' && s.get(i + 1) == Some(&b'-')) || s[i] == b'#';
        if olc {
            // The first quote or line end at or after i.
            let end = match stop {
                Some(e) if e >= i => e,
                _ => {
                    let e = s[i..]
                        .iter()
                        .position(|&c| matches!(c, b'\'' | b'"' | b'\r' | b'\n'))
                        .map_or(s.len(), |p| i + p);
                    stop = Some(e);
                    e
                }
            };
            if end == s.len() || matches!(s[end], b'\r' | b'\n') {
                i = end;
                continue;
            }
        }
        o.push(s[i]);
        i += 1;
    }
}

fn is_use(s: &[u8]) -> bool {
    if !starts_with_ci(s, b"use ") {
        return false;
    }
    let mut rest = &s[4..];
    if rest.last() == Some(&b'\n') {
        rest = &rest[..rest.len() - 1];
    }
    !rest.is_empty() && rest.iter().all(|&c| !is_space(c))
}

fn strip_escaped_quotes(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && matches!(s.get(i + 1), Some(b'"' | b'\'')) {
            i += 2;
            continue;
        }
        o.push(s[i]);
        i += 1;
    }
}

fn quoted_to_placeholder(s: &[u8], o: &mut Vec<u8>, q: u8) {
    let mut i = 0;
    while i < s.len() {
        if s[i] == q {
            if let Some(end) = s[i + 1..].iter().position(|&c| c == q) {
                o.push(b'?');
                i = i + 1 + end + 1;
                continue;
            }
        }
        o.push(s[i]);
        i += 1;
    }
}

fn booleans(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if word_at(s, i, b"false") {
            o.push(b'?');
            i += 5;
        } else if word_at(s, i, b"true") {
            o.push(b'?');
            i += 4;
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
}

fn numbers(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || c == b'+' || c == b'-' {
            i += 1;
            while i < s.len()
                && matches!(s[i], b'0'..=b'9' | b'a'..=b'f' | b'.' | b'x' | b'+' | b'-')
            {
                i += 1;
            }
            o.push(b'?');
        } else {
            o.push(c);
            i += 1;
        }
    }
}

fn prefixed_placeholders(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if matches!(s[i], b'x' | b'b' | b'.' | b'+' | b'-') && s.get(i + 1) == Some(&b'?') {
            o.push(b'?');
            i += 2;
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
}

fn squeeze_whitespace(s: &[u8], o: &mut Vec<u8>) {
    let start = s.iter().position(|&c| !is_space(c)).unwrap_or(s.len());
    let mut end = s.len();
    if end > start && s[end - 1] == b'\n' {
        end -= 1;
    }
    let mut prev_space = false;
    for &c in &s[start..end] {
        if matches!(c, b' ' | b'\n' | b'\t' | b'\r' | 0x0c) {
            if !prev_space {
                o.push(b' ');
            }
            prev_space = true;
        } else {
            o.push(c);
            prev_space = false;
        }
    }
}

fn nulls(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if word_at(s, i, b"null") {
            o.push(b'?');
            i += 4;
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
}

/// Length of `(?:[\s,]*\([\s?,]*\))+` at `i`, if it matches.
fn list_run(s: &[u8], mut i: usize) -> Option<usize> {
    let start = i;
    let mut matched = None;
    loop {
        let mut j = i;
        while j < s.len() && (is_space(s[j]) || s[j] == b',') {
            j += 1;
        }
        if s.get(j) != Some(&b'(') {
            break;
        }
        j += 1;
        while j < s.len() && (is_space(s[j]) || s[j] == b'?' || s[j] == b',') {
            j += 1;
        }
        if s.get(j) != Some(&b')') {
            break;
        }
        i = j + 1;
        matched = Some(i - start);
    }
    matched
}

fn collapse_lists(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if i == 0 || !is_word(s[i - 1]) {
            let kw = if s[i..].starts_with(b"values") {
                6
            } else if s[i..].starts_with(b"value") {
                5
            } else if s[i..].starts_with(b"in") {
                2
            } else {
                0
            };
            if kw > 0 && s.get(i + kw).is_none_or(|&c| !is_word(c)) {
                if let Some(n) = list_run(s, i + kw) {
                    o.extend_from_slice(&s[i..i + kw]);
                    o.extend_from_slice(b"(?+)");
                    i += kw + n;
                    continue;
                }
            }
        }
        o.push(s[i]);
        i += 1;
    }
}

fn fold_limit(s: &[u8], o: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"limit ?") && (i == 0 || !is_word(s[i - 1])) {
            let mut j = i + 7;
            if s[j..].starts_with(b", ?") {
                j += 3;
            } else if s[j..].starts_with(b",?") {
                j += 2;
            } else if s[j..].starts_with(b" offset ?") {
                j += 9;
            }
            o.extend_from_slice(b"limit ?");
            o.extend_from_slice(&s[j..]);
            return;
        }
        o.push(s[i]);
        i += 1;
    }
}

fn drop_order_asc(s: &[u8], o: &mut Vec<u8>) {
    let Some(pos) =
        (0..s.len()).find(|&i| word_at(s, i, b"order") && s[i..].starts_with(b"order by "))
    else {
        o.extend_from_slice(s);
        return;
    };
    let body_start = pos + 9;
    o.extend_from_slice(&s[..body_start]);
    let mut i = body_start;
    while i < s.len() {
        if i > body_start && is_space(s[i]) {
            let ws = s[i..].iter().take_while(|&&c| is_space(c)).count();
            if s[i + ws..].starts_with(b"asc") {
                i += ws + 3;
                continue;
            }
            // Keep the run whole: scanning it again from each of its bytes would be quadratic.
            o.extend_from_slice(&s[i..i + ws]);
            i += ws;
            continue;
        }
        o.push(s[i]);
        i += 1;
    }
}

/// Normalised form of `sql`: literals to `?`, lists collapsed, whitespace/case/comments normalised.
pub fn fingerprint(sql: &[u8]) -> String {
    Fingerprinter::default().fingerprint(sql).to_owned()
}

/// Stable 64-bit id of a fingerprint: the low 64 bits of pt-query-digest's Query ID (MD5).
pub fn fingerprint_id(fingerprint: &str) -> u64 {
    let d = Md5::digest(fingerprint.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[8..16]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fingerprints and Query IDs printed by pt-query-digest 3.x (`--output json`) for the same SQL.
    const PT: &[(&str, &str, &str)] = &[
        ("SELECT c FROM sbtest1 WHERE id=5001", "select c from sbtest? where id=?", "E81D0B3DB4FB31BC558CAEF5F387E929"),
        (
            "SELECT DISTINCT c FROM sbtest3 WHERE id BETWEEN 4970 AND 5069 ORDER BY c ASC",
            "select distinct c from sbtest? where id between ? and ? order by c",
            "F0C5AE75A52E847D737F39F04B198EF6",
        ),
        (
            "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5001, 4993, '838-68', '2263-9'),(5002, 1, 'a', 'b') ON DUPLICATE KEY UPDATE k=k+1",
            "insert into sbtest? (id, k, c, pad) values(?+)",
            "6C545CFB55365122F1256A27240AEFC7",
        ),
        (
            "select * from t where a in (1, 2,3) and b = \"x\\\"y\" and c = -1.5e3 and d=0x1F and e=NULL /* hi */ limit 10, 20",
            "select * from t where a in(?+) and b = ? and c = ? and d=?f and e=? limit ?",
            "5461349647B3A78A4FDFD62968151E42",
        ),
        ("USE sbtest", "use ?", "DD749893CA4A219A6C099B0B73EA7633"),
    ];

    #[test]
    fn matches_pt_query_digest() {
        let mut f = Fingerprinter::default();
        for (sql, fp, id) in PT {
            assert_eq!(f.fingerprint(sql.as_bytes()), *fp, "{sql}");
            let low = u64::from_str_radix(&id[16..], 16).unwrap();
            assert_eq!(fingerprint_id(fp), low, "{sql}");
        }
    }

    /// Each expectation is what pt-query-digest 3.x printed for the same statement.
    #[test]
    fn other_rules() {
        let mut f = Fingerprinter::default();
        assert_eq!(f.fingerprint(b"CALL myproc(1, 'a')"), "call myproc");
        assert_eq!(f.fingerprint(b"SELECT 1 -- note\n"), "select ? ");
        assert_eq!(
            f.fingerprint(b"select /*! STRAIGHT_JOIN */ a from t where b=TRUE"),
            "select /*! straight_join */ a from t where b=?"
        );
        assert_eq!(
            f.fingerprint(b"select a from t limit 5 offset 10"),
            "select a from t limit ?"
        );
        assert_eq!(
            f.fingerprint(b"select\t\ta  from t where x IN ( ?, ? )"),
            "select a from t where x in(?+)"
        );
        assert_eq!(
            f.fingerprint(b"UPDATE sbtest2 SET k=k+1 WHERE id=42"),
            "update sbtest? set k=k? where id=?"
        );
    }

    /// SQL-ish pieces, multi-byte characters among them, for random statements.
    const PIECES: &[&str] = &[
        "select ",
        "SELECT",
        " from ",
        "t",
        " where ",
        "a",
        "=",
        "1",
        "-1.5e3",
        "0x1F",
        "'",
        "\"",
        "\\",
        "`",
        "/*",
        "*/",
        "/*!",
        "--",
        "#",
        "\n",
        "\r",
        " ",
        "\t",
        "\u{b}",
        "(",
        ")",
        ",",
        "?",
        "in",
        "values",
        "value",
        "limit ",
        "offset ",
        "order by ",
        " asc",
        "null",
        "true",
        "call ",
        "use ",
        "insert ",
        "replace ",
        "中",
        "é",
        "😀",
        "\u{0}",
        "administrator command: ",
    ];

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(sql in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut f = Fingerprinter::default();
            let fp = f.fingerprint(&sql).to_owned();
            let _ = fingerprint_id(&fp);
        }

        #[test]
        fn random_unicode_never_panics(sql in "\\PC{0,80}") {
            let mut f = Fingerprinter::default();
            let _ = f.fingerprint(sql.as_bytes());
        }

        #[test]
        fn random_sql_pieces_never_panic(
            picks in proptest::collection::vec(proptest::sample::select(PIECES), 0..60),
            cut in 0usize..400,
        ) {
            let sql = picks.concat();
            let mut f = Fingerprinter::default();
            let _ = f.fingerprint(sql.as_bytes());
            // Cut anywhere, also inside a multi-byte character.
            let b = sql.as_bytes();
            let _ = f.fingerprint(&b[..cut.min(b.len())]);
        }
    }

    /// Every pass run, none skipped: what [`Fingerprinter::fingerprint`] must equal.
    fn every_pass(sql: &[u8]) -> String {
        let mut f = Fingerprinter::default();
        f.a.extend_from_slice(sql);
        if starts_with_ci(&f.a, b"administrator command: ") || call_name(&f.a).is_some() {
            return Fingerprinter::default().fingerprint(sql).to_owned();
        }
        shorten_multi_insert(&mut f.a);
        f.pass(strip_comments);
        if is_use(&f.a) {
            return "use ?".to_owned();
        }
        f.pass(strip_escaped_quotes);
        f.pass(|i, o| quoted_to_placeholder(i, o, b'"'));
        f.pass(|i, o| quoted_to_placeholder(i, o, b'\''));
        f.pass(booleans);
        f.pass(numbers);
        f.pass(prefixed_placeholders);
        f.pass(squeeze_whitespace);
        f.a.make_ascii_lowercase();
        f.pass(nulls);
        f.pass(collapse_lists);
        f.pass(fold_limit);
        f.pass(drop_order_asc);
        f.finish_a().to_owned()
    }

    proptest::proptest! {
        #[test]
        fn skipped_passes_change_nothing(
            picks in proptest::collection::vec(
                proptest::sample::select([PIECES, &["ORDER BY ", "IN", " ASC", "Yes", "y"]].concat()),
                0..40,
            ),
        ) {
            let sql = picks.concat();
            let mut f = Fingerprinter::default();
            proptest::prop_assert_eq!(f.fingerprint(sql.as_bytes()), every_pass(sql.as_bytes()));
        }
    }

    #[test]
    fn many_unclosed_comments_and_space_runs_stay_linear() {
        let mut f = Fingerprinter::default();
        let opener = "/*x".repeat(100_000);
        assert!(f.fingerprint(opener.as_bytes()).starts_with("/*x/*x"));
        let hashes = format!("select 1 {} '", "# ".repeat(100_000));
        assert!(f.fingerprint(hashes.as_bytes()).starts_with("select ? #"));
        let vt = format!("select a from t order by a{}b", "\u{b}".repeat(200_000));
        assert!(f.fingerprint(vt.as_bytes()).ends_with('b'));
    }
}
