//! The planner's memo key of a statement text: the text with every run of ASCII digits made one
//! `0`, so statements that differ only in their numbers (`WHERE id=5034`, `sbtest3`) share one
//! entry of filter verdict and fingerprint.
//!
//! Sound because both facts ignore digit values and run lengths: the fingerprint turns every
//! digit (and what follows it of `[0-9a-f.x+-]`) into one `?` and no earlier pass looks at digits;
//! the safety classifier reads digits only as parts of literals, words (no keyword has a digit)
//! and executable-comment versions. Two fingerprint forms keep text as it is, digits included:
//! `CALL name(...)` (the procedure's name) and `administrator command: ...`; texts that may be
//! one of them (first letter `c` or `a`, see [`shape_key`]) have no shape. The `--filter` /
//! `--exclude` regexes may look at numbers, so with one of them set the planner keys by the
//! exact text instead. The tests check the two facts agree on random texts that differ only in
//! their digit runs.

/// Write `sql`'s shape into `out` (cleared first): each maximal run of ASCII digits becomes one
/// `0`, every other byte stays. Two texts have the same shape exactly when they differ only in
/// the contents of their digit runs. False (and `out` left empty) for a text whose first
/// non-blank letter is `c` or `a` (maybe `CALL` or `administrator command:`, whose fingerprints
/// keep digits): key it by its exact text.
pub(super) fn shape_key(sql: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let first = sql
        .iter()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    if matches!(first, Some(b'c' | b'C' | b'a' | b'A')) {
        return false;
    }
    // Written by index into a buffer of the text's length (the shape is never longer).
    out.resize(sql.len(), 0);
    let mut in_run = false;
    let (mut i, mut j) = (0, 0);
    while i < sql.len() {
        // Eight bytes at a time while they hold no digit (most of a statement's text).
        if let Some(w) = sql[i..].first_chunk::<8>() {
            if digits(u64::from_le_bytes(*w)) == 0 {
                out[j..j + 8].copy_from_slice(w);
                in_run = false;
                i += 8;
                j += 8;
                continue;
            }
        }
        let c = sql[i];
        i += 1;
        if c.is_ascii_digit() {
            if in_run {
                continue;
            }
            in_run = true;
            out[j] = b'0';
        } else {
            in_run = false;
            out[j] = c;
        }
        j += 1;
    }
    out.truncate(j);
    true
}

/// The high bit of each byte of `w` that is an ASCII digit (`0x30..=0x39`), the others clear.
#[inline]
fn digits(w: u64) -> u64 {
    const LO: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Each byte's low seven bits plus 0x50 (0x46) sets its high bit when they are >= 0x30
    // (>= 0x3a), with no carry into the next byte; bytes with the high bit set are no digits.
    let t = w & LO;
    (t + 0x5050_5050_5050_5050) & !(t + 0x4646_4646_4646_4646) & !w & HI
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;
    use mrte_capture::fingerprint::Fingerprinter;
    use proptest::prelude::*;

    fn shape(s: &str) -> Option<String> {
        let mut v = Vec::new();
        shape_key(s.as_bytes(), &mut v).then(|| String::from_utf8(v).unwrap())
    }

    /// The plain definition the word-at-a-time scan must equal.
    fn reference(sql: &[u8]) -> Option<Vec<u8>> {
        let first = sql.iter().find(|c| !b" \t\n\r\x0b\x0c".contains(c));
        if first.is_some_and(|c| b"cCaA".contains(c)) {
            return None;
        }
        let mut out = Vec::new();
        let mut rest = sql;
        while let Some(p) = rest.iter().position(u8::is_ascii_digit) {
            out.extend_from_slice(&rest[..p]);
            out.push(b'0');
            let run = rest[p..].iter().take_while(|c| c.is_ascii_digit()).count();
            rest = &rest[p + run..];
        }
        out.extend_from_slice(rest);
        Some(out)
    }

    #[test]
    fn digit_mask_marks_exactly_the_digits() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b'a', b, b'9', 0xff, b, b'/', b':', b]);
            let want = [
                false,
                b.is_ascii_digit(),
                true,
                false,
                b.is_ascii_digit(),
                false,
                false,
                b.is_ascii_digit(),
            ];
            let got = digits(w);
            for (k, &d) in want.iter().enumerate() {
                assert_eq!(got >> (8 * k + 7) & 1 == 1, d, "byte {b:#x} at {k}");
            }
            assert_eq!(got & !0x8080_8080_8080_8080, 0);
        }
    }

    proptest! {
        #[test]
        fn word_scan_equals_the_definition(sql in prop::collection::vec(any::<u8>(), 0..80)) {
            let mut v = Vec::new();
            let has = shape_key(&sql, &mut v);
            prop_assert_eq!(has.then_some(v), reference(&sql));
        }

        #[test]
        fn word_scan_equals_the_definition_on_text(sql in "[0-9a-z =()]{0,70}") {
            let mut v = Vec::new();
            let has = shape_key(sql.as_bytes(), &mut v);
            prop_assert_eq!(has.then_some(v), reference(sql.as_bytes()));
        }
    }

    #[test]
    fn digit_runs_become_one_zero() {
        assert_eq!(
            shape("SELECT c FROM sbtest12 WHERE id=5034").unwrap(),
            "SELECT c FROM sbtest0 WHERE id=0"
        );
        assert_eq!(
            shape("x IN (1,22,0x1f, 1.5e-3)").unwrap(),
            "x IN (0,0,0x0f, 0.0e-0)"
        );
        assert_eq!(shape("").unwrap(), "");
        assert_eq!(shape("no digits").unwrap(), "no digits");
        assert_ne!(shape("b1c"), shape("b1 c"));
        // Fingerprints that keep digits: no shape.
        assert_eq!(shape(" CALL db1.p(2)"), None);
        assert_eq!(shape("administrator command: Ping 3"), None);
        assert_eq!(shape("\ncall p()"), None);
    }

    /// Pieces that stress both fingerprint and classifier: numbers in every form, identifiers
    /// with digits, quotes, comments (executable ones with versions), keywords, variables.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("SELECT ".into()),
            Just("select".into()),
            Just(" FROM sbtest".into()),
            Just(" WHERE id=".into()),
            Just(" INTO OUTFILE ".into()),
            Just(" FOR UPDATE".into()),
            Just("UPDATE t SET c=".into()),
            Just("SET GLOBAL x=".into()),
            Just("SET @@global.".into()),
            Just("@@session.".into()),
            Just("@v".into()),
            Just(" LIMIT ".into()),
            Just(" IN (".into()),
            Just(" VALUES (".into()),
            Just("),(".into()),
            Just("/*!".into()),
            Just("/*M!".into()),
            Just("/* c */".into()),
            Just("*/".into()),
            Just("-- ".into()),
            Just("--".into()),
            Just("#".into()),
            Just("\n".into()),
            Just("'".into()),
            Just("\"".into()),
            Just("`".into()),
            Just("\\".into()),
            Just(";".into()),
            Just("USE ".into()),
            Just("CALL p(".into()),
            Just("call db1.p".into()),
            Just("administrator command: ".into()),
            Just(" ".into()),
            Just("null".into()),
            Just("true".into()),
            Just("NO_WRITE_TO_BINLOG".into()),
            Just("abcdefghijklmnopqrstuvwxy".into()),
            "[0-9]{1,4}",
            "[0-9a-fx.+-]{1,4}",
            "[ a-zA-Z_$.,()=+*-]{1,3}",
        ]
    }

    /// A text and the same text with every digit run replaced by another digit run.
    fn text_and_twin() -> impl Strategy<Value = (String, String)> {
        (
            prop::collection::vec(piece(), 1..14),
            prop::collection::vec("[0-9]{1,6}", 64),
        )
            .prop_map(|(pieces, runs)| {
                let a: String = pieces.concat();
                let mut b = String::new();
                let mut runs = runs.into_iter().cycle();
                let mut in_run = false;
                for c in a.chars() {
                    if c.is_ascii_digit() {
                        if !in_run {
                            b.push_str(&runs.next().unwrap());
                        }
                        in_run = true;
                    } else {
                        b.push(c);
                        in_run = false;
                    }
                }
                (a, b)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn same_shape_same_fingerprint_and_class((a, b) in text_and_twin()) {
            let (sa, sb) = (shape(&a), shape(&b));
            prop_assert_eq!(&sa, &sb);
            if sa.is_none() {
                return Ok(());
            }
            let mut f = Fingerprinter::default();
            let fa = f.fingerprint(a.as_bytes()).to_owned();
            let fb = f.fingerprint(b.as_bytes()).to_owned();
            prop_assert_eq!(fa, fb);
            prop_assert_eq!(classify(a.as_bytes()), classify(b.as_bytes()));
        }
    }
}
