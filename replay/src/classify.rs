//! Cheap SQL statement classifier for the replay safety rules: read-only, write, or dangerous.
//!
//! It tokenises just enough (comments, quoted strings and identifiers, `;` separators, MySQL
//! executable comments `/*! ... */` whose content counts as SQL) to find the leading keywords of
//! each statement and a few clauses (`FOR UPDATE`, `INTO`, ...). It does not parse SQL, does not
//! validate it, and errs on the side of "write": anything it does not recognise as read-only is a
//! write. A multi-statement text takes the most severe class of its statements.

/// Safety class of a statement text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementClass {
    /// Cannot change data: SELECT (plain), SHOW, DESCRIBE, EXPLAIN, session SET, USE, transaction control, DO.
    ReadOnly,
    /// May change data or schema (the default for anything not recognised).
    Write,
    /// Changes users/grants, server state or replication, or stops the server.
    Dangerous,
}

/// An upper-cased word kept inline (no allocation per word): keywords are short, so a longer or
/// non-ASCII word is kept as "", which equals no keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kw {
    buf: [u8; KW_MAX],
    len: u8,
}

/// Longest word kept (the longest keyword looked at, `NO_WRITE_TO_BINLOG`, has 18 letters).
const KW_MAX: usize = 24;

impl Kw {
    fn new(w: &[u8]) -> Self {
        let mut buf = [0u8; KW_MAX];
        if w.len() > KW_MAX || !w.is_ascii() {
            return Self { buf, len: 0 };
        }
        buf[..w.len()].copy_from_slice(w);
        buf[..w.len()].make_ascii_uppercase();
        Self {
            buf,
            len: w.len() as u8,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes()).unwrap_or("")
    }
}

impl PartialEq<str> for Kw {
    fn eq(&self, o: &str) -> bool {
        self.bytes() == o.as_bytes()
    }
}

impl PartialEq<&str> for Kw {
    fn eq(&self, o: &&str) -> bool {
        self.bytes() == o.as_bytes()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(Kw),
    /// `@@global.x`, `@x` and similar variable references, upper-cased.
    Var(String),
    Literal,
    Punct(u8),
    Semi,
}

fn tokenize(sql: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    let n = sql.len();
    let mut in_exec_comment = false;
    while i < n {
        let c = sql[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => i += 1,
            b'#' => {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                let exec = sql.get(i + 2) == Some(&b'!')
                    || (sql.get(i + 2) == Some(&b'M') && sql.get(i + 3) == Some(&b'!'));
                if exec {
                    i += if sql[i + 2] == b'M' { 4 } else { 3 };
                    while i < n && sql[i].is_ascii_digit() {
                        i += 1;
                    }
                    in_exec_comment = true;
                } else {
                    i += 2;
                    while i < n && !(sql[i] == b'*' && sql.get(i + 1) == Some(&b'/')) {
                        i += 1;
                    }
                    i = (i + 2).min(n);
                }
            }
            b'*' if in_exec_comment && sql.get(i + 1) == Some(&b'/') => {
                in_exec_comment = false;
                i += 2;
            }
            b'\'' | b'"' | b'`' => {
                let q = c;
                i += 1;
                while i < n {
                    if sql[i] == b'\\' && q != b'`' {
                        i += 2;
                        continue;
                    }
                    if sql[i] == q {
                        if sql.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                toks.push(Tok::Literal);
                i = (i + 1).min(n);
            }
            b';' => {
                toks.push(Tok::Semi);
                i += 1;
            }
            b'@' => {
                let start = i;
                i += 1;
                while i < n
                    && (sql[i].is_ascii_alphanumeric()
                        || matches!(sql[i], b'_' | b'@' | b'.' | b'$'))
                {
                    i += 1;
                }
                toks.push(Tok::Var(
                    String::from_utf8_lossy(&sql[start..i]).to_ascii_uppercase(),
                ));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < n
                    && (sql[i].is_ascii_alphanumeric()
                        || matches!(sql[i], b'_' | b'$')
                        || sql[i] >= 0x80)
                {
                    i += 1;
                }
                toks.push(Tok::Word(Kw::new(&sql[start..i])));
            }
            c if c.is_ascii_digit() => {
                while i < n && (sql[i].is_ascii_alphanumeric() || sql[i] == b'.') {
                    i += 1;
                }
                toks.push(Tok::Literal);
            }
            c => {
                toks.push(Tok::Punct(c));
                i += 1;
            }
        }
    }
    toks
}

fn word(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    }
}

fn has_word(toks: &[&Tok], w: &str) -> bool {
    toks.iter().any(|t| matches!(t, Tok::Word(x) if x == w))
}

fn has_seq(toks: &[&Tok], seq: &[&str]) -> bool {
    toks.windows(seq.len()).any(|win| {
        win.iter()
            .zip(seq)
            .all(|(t, s)| matches!(t, Tok::Word(x) if x == s))
    })
}

/// Classify one statement's tokens (no `;` inside). `EXPLAIN ANALYZE` and `ANALYZE` prefixes are
/// peeled in a loop (no recursion: a statement of a million `ANALYZE`s must not overflow the stack).
fn classify_tokens(toks: &[Tok]) -> StatementClass {
    use StatementClass::*;
    let toks: Vec<&Tok> = toks
        .iter()
        .filter(|t| !matches!(t, Tok::Punct(b'(')))
        .collect();
    let mut toks: &[&Tok] = &toks;
    loop {
        let first = match toks.first() {
            Some(Tok::Word(w)) => w.as_str(),
            Some(_) => return Write,
            None => return ReadOnly,
        };
        let second = word(toks.get(1).copied());
        match first {
            "EXPLAIN" => {
                let analyze = toks
                    .iter()
                    .skip(1)
                    .take(3)
                    .position(|t| matches!(t, Tok::Word(w) if w == "ANALYZE"));
                match analyze {
                    Some(p) => toks = &toks[p + 2..],
                    None => return ReadOnly,
                }
            }
            "ANALYZE" => match second {
                Some("TABLE" | "NO_WRITE_TO_BINLOG" | "LOCAL") | None => return Write,
                Some("FORMAT") => {
                    let rest = toks
                        .iter()
                        .skip(2)
                        .position(|t| matches!(t, Tok::Word(w) if w != "JSON"));
                    match rest {
                        Some(p) => toks = &toks[p + 2..],
                        None => return Write,
                    }
                }
                Some(_) => toks = &toks[1..],
            },
            _ => return classify_statement(first, second, toks),
        }
    }
}

/// Classify a statement that starts with the word `first` (then `second`).
fn classify_statement(first: &str, second: Option<&str>, toks: &[&Tok]) -> StatementClass {
    use StatementClass::*;
    match first {
        "GRANT" | "REVOKE" | "SHUTDOWN" | "RESTART" | "KILL" | "FLUSH" | "INSTALL"
        | "UNINSTALL" | "PURGE" => Dangerous,
        "CREATE" | "DROP" | "ALTER" | "RENAME"
            if matches!(second, Some("USER" | "ROLE"))
                || (second == Some("OR") && has_seq(toks, &["REPLACE", "USER"])) =>
        {
            Dangerous
        }
        "CREATE" | "DROP" if second == Some("SERVER") => Dangerous,
        "CHANGE" if matches!(second, Some("MASTER" | "REPLICATION")) => Dangerous,
        "RESET" => match second {
            Some("QUERY") => Write,
            _ => Dangerous,
        },
        "START" | "STOP"
            if matches!(
                second,
                Some("SLAVE" | "REPLICA" | "ALL" | "GROUP_REPLICATION")
            ) =>
        {
            Dangerous
        }
        "SET" => classify_set(&toks[1..]),
        "SELECT" | "VALUES" | "TABLE" | "WITH" => {
            if select_writes(toks, first == "WITH") {
                Write
            } else {
                ReadOnly
            }
        }
        "SHOW" | "DESCRIBE" | "DESC" | "HELP" | "USE" | "BEGIN" | "COMMIT" | "ROLLBACK"
        | "SAVEPOINT" | "DO" => ReadOnly,
        "RELEASE" if second == Some("SAVEPOINT") => ReadOnly,
        "START" if second == Some("TRANSACTION") => ReadOnly,
        _ => Write,
    }
}

/// A SELECT (VALUES, TABLE, WITH) that writes or locks: `FOR UPDATE`, `FOR SHARE`,
/// `LOCK IN SHARE MODE`, `INTO`, `NEXTVAL`, `SETVAL`; for WITH also a data-changing verb. One
/// pass over the words.
fn select_writes(toks: &[&Tok], with: bool) -> bool {
    let next_is = |i: usize, seq: &[&str]| {
        let after = toks.get(i + 1..).unwrap_or_default();
        after.len() >= seq.len()
            && after
                .iter()
                .zip(seq)
                .all(|(t, s)| matches!(t, Tok::Word(x) if x == s))
    };
    toks.iter().enumerate().any(|(i, t)| {
        let Tok::Word(w) = t else {
            return false;
        };
        match w.bytes() {
            b"INTO" | b"NEXTVAL" | b"SETVAL" => true,
            b"FOR" => next_is(i, &["UPDATE"]) || next_is(i, &["SHARE"]),
            b"LOCK" => next_is(i, &["IN", "SHARE", "MODE"]),
            b"UPDATE" | b"DELETE" | b"INSERT" | b"REPLACE" => with,
            _ => false,
        }
    })
}

fn classify_set(rest: &[&Tok]) -> StatementClass {
    use StatementClass::*;
    if let Some("GLOBAL" | "PERSIST" | "PERSIST_ONLY" | "PASSWORD" | "DEFAULT") =
        word(rest.first().copied())
    {
        return Dangerous;
    }
    for t in rest {
        match t {
            Tok::Var(v)
                if v.starts_with("@@GLOBAL.") || v.starts_with("@@PERSIST") || v == "@@GLOBAL" =>
            {
                return Dangerous
            }
            Tok::Word(w) if w == "GLOBAL" || w == "PERSIST" || w == "PERSIST_ONLY" => {
                return Dangerous
            }
            _ => {}
        }
    }
    if has_word(rest, "SELECT") {
        let sub = rest
            .iter()
            .position(|t| matches!(t, Tok::Word(w) if w == "SELECT"))
            .map(|p| classify_statement("SELECT", word(rest.get(p + 1).copied()), &rest[p..]))
            .unwrap_or(Write);
        return sub.max(ReadOnly);
    }
    ReadOnly
}

/// Classify a statement text (possibly several `;`-separated statements).
pub fn classify(sql: &[u8]) -> StatementClass {
    let toks = tokenize(sql);
    toks.split(|t| *t == Tok::Semi)
        .map(classify_tokens)
        .max()
        .unwrap_or(StatementClass::ReadOnly)
}

/// Classify a command code other than COM_QUERY/COM_STMT_PREPARE: COM_SHUTDOWN, COM_PROCESS_KILL,
/// COM_REFRESH (FLUSH) and replication commands are dangerous.
pub fn classify_command_code(code: u8) -> Option<StatementClass> {
    use mrte_capture::mysql::consts::com;
    match code {
        com::SHUTDOWN
        | com::PROCESS_KILL
        | com::REFRESH
        | com::BINLOG_DUMP
        | com::REGISTER_SLAVE
        | com::BINLOG_DUMP_GTID
        | com::CONNECT_OUT
        | com::CONNECT
        | com::DAEMON => Some(StatementClass::Dangerous),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::StatementClass::*;
    use super::*;

    fn c(s: &str) -> StatementClass {
        classify(s.as_bytes())
    }

    #[test]
    fn selects() {
        assert_eq!(c("SELECT 1"), ReadOnly);
        assert_eq!(c("  /* hi */ ( select * from t where a='into' )"), ReadOnly);
        assert_eq!(c("select * from t for update"), Write);
        assert_eq!(c("SELECT * FROM t LOCK IN SHARE MODE"), Write);
        assert_eq!(c("select a into @x from t"), Write);
        assert_eq!(c("select * from t into outfile '/tmp/x'"), Write);
        assert_eq!(c("select `into` from t"), ReadOnly);
        assert_eq!(c("select * from t for share"), Write);
        assert_eq!(c("select * from t lock in share"), ReadOnly);
        assert_eq!(c("select nextval(s)"), Write);
        assert_eq!(c("with x as (select 1) update t set a = 1"), Write);
        assert_eq!(c("select update_time from t"), ReadOnly);
        assert_eq!(c("select a from t where b = 'for update'"), ReadOnly);
        assert_eq!(c("select 'FOR UPDATE' from t"), ReadOnly);
        assert_eq!(c("-- c\nselect 1"), ReadOnly);
        assert_eq!(c("# c\nselect 1"), ReadOnly);
        assert_eq!(c("with x as (select 1) select * from x"), ReadOnly);
        assert_eq!(c("with x as (select 1) delete from t"), Write);
        assert_eq!(c("select nextval(s)"), Write);
        assert_eq!(c("select 'it''s', \"a\\\"b\" from t"), ReadOnly);
    }

    #[test]
    fn others() {
        assert_eq!(c("SHOW TABLES"), ReadOnly);
        assert_eq!(c("desc t"), ReadOnly);
        assert_eq!(c("EXPLAIN UPDATE t SET a=1"), ReadOnly);
        assert_eq!(c("EXPLAIN ANALYZE UPDATE t SET a=1"), Write);
        assert_eq!(c("EXPLAIN ANALYZE SELECT 1"), ReadOnly);
        assert_eq!(c("ANALYZE UPDATE t SET a=1"), Write);
        assert_eq!(c("ANALYZE SELECT 1"), ReadOnly);
        assert_eq!(c("ANALYZE TABLE t"), Write);
        assert_eq!(c("SET autocommit=0"), ReadOnly);
        assert_eq!(c("SET NAMES utf8mb4"), ReadOnly);
        assert_eq!(c("SET SESSION sql_mode=''"), ReadOnly);
        assert_eq!(c("set @a = 1"), ReadOnly);
        assert_eq!(c("SET GLOBAL max_connections=1"), Dangerous);
        assert_eq!(c("SET @@global.max_connections=1"), Dangerous);
        assert_eq!(c("set sql_mode='', @@GLOBAL.x=1"), Dangerous);
        assert_eq!(c("SET PASSWORD FOR u = 'x'"), Dangerous);
        assert_eq!(c("USE db"), ReadOnly);
        assert_eq!(c("BEGIN"), ReadOnly);
        assert_eq!(c("START TRANSACTION READ ONLY"), ReadOnly);
        assert_eq!(c("COMMIT"), ReadOnly);
        assert_eq!(c("ROLLBACK TO SAVEPOINT a"), ReadOnly);
        assert_eq!(c("DO sleep(0)"), ReadOnly);
        assert_eq!(c(""), ReadOnly);
    }

    #[test]
    fn writes_and_dangerous() {
        assert_eq!(c("INSERT INTO t VALUES (1)"), Write);
        assert_eq!(c("update t set a=1"), Write);
        assert_eq!(c("CREATE TABLE t (a int)"), Write);
        assert_eq!(c("CALL p()"), Write);
        assert_eq!(c("LOAD DATA INFILE 'x' INTO TABLE t"), Write);
        assert_eq!(c("GRANT ALL ON *.* TO u"), Dangerous);
        assert_eq!(c("revoke all on *.* from u"), Dangerous);
        assert_eq!(c("CREATE USER u"), Dangerous);
        assert_eq!(c("drop user u"), Dangerous);
        assert_eq!(c("ALTER USER u IDENTIFIED BY 'x'"), Dangerous);
        assert_eq!(c("RENAME USER a TO b"), Dangerous);
        assert_eq!(c("SHUTDOWN"), Dangerous);
        assert_eq!(c("KILL 12"), Dangerous);
        assert_eq!(c("FLUSH TABLES"), Dangerous);
        assert_eq!(c("INSTALL PLUGIN x SONAME 'y'"), Dangerous);
        assert_eq!(c("CHANGE MASTER TO MASTER_HOST='x'"), Dangerous);
        assert_eq!(c("change replication source to source_host='x'"), Dangerous);
        assert_eq!(c("RESET MASTER"), Dangerous);
        assert_eq!(c("STOP SLAVE"), Dangerous);
        assert_eq!(c("select 1; drop user u"), Dangerous);
        assert_eq!(c("select 1; delete from t"), Write);
        assert_eq!(c("select 1; select 2"), ReadOnly);
        assert_eq!(c("/*!40101 SET GLOBAL x=1 */"), Dangerous);
        assert_eq!(c("/*!40101 SET NAMES utf8 */"), ReadOnly);
        assert_eq!(c("/* SET GLOBAL x=1 */ select 1"), ReadOnly);
        assert_eq!(c("\u{0}\u{1}garbage"), Write);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(sql in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = classify(&sql);
        }

        #[test]
        fn random_unicode_never_panics(sql in "\\PC{0,80}") {
            let _ = classify(sql.as_bytes());
        }

        /// SQL-ish pieces with multi-byte characters, cut anywhere (also inside a character).
        #[test]
        fn random_sql_pieces_never_panic(
            picks in proptest::collection::vec(proptest::sample::select(vec![
                "SELECT ", "select", " from t", " for update", " into ", "SET ", "@@global.x",
                "@x", "=", "1", "'", "\"", "`", "\\", "/*", "*/", "/*!", "/*M!", "--", "-- ", "#",
                "\n", ";", "(", "EXPLAIN ", "ANALYZE ", "FORMAT=JSON ", "WITH ", "GRANT ", "中",
                "é", "😀", "\u{0}", " ",
            ]), 0..60),
            cut in 0usize..400,
        ) {
            let sql = picks.concat();
            let b = sql.as_bytes();
            let _ = classify(b);
            let _ = classify(&b[..cut.min(b.len())]);
        }

        #[test]
        fn leading_comments_and_space_do_not_change_the_class(
            stmt in proptest::sample::select(vec![
                "SELECT 1", "select * from t for update", "INSERT INTO t VALUES (1)",
                "GRANT ALL ON *.* TO u", "SET GLOBAL x=1", "SHOW TABLES", "(select 1)",
            ]),
            prefix in proptest::sample::select(vec![
                "", "  ", "\n\t", "/* c */", "-- c\n", "# c\n", "/* a */ /* b */ ",
            ]),
        ) {
            let plain = classify(stmt.as_bytes());
            let prefixed = classify(format!("{prefix}{stmt}").as_bytes());
            proptest::prop_assert_eq!(plain, prefixed);
        }
    }

    #[test]
    fn deep_analyze_prefixes_do_not_recurse() {
        let sql = format!("EXPLAIN ANALYZE {}SELECT 1", "ANALYZE ".repeat(1_000_000));
        assert_eq!(c(&sql), ReadOnly);
        let sql = format!("{}UPDATE t SET a=1", "ANALYZE FORMAT=JSON ".repeat(300_000));
        assert_eq!(c(&sql), Write);
        assert_eq!(c("SET @a = (SELECT 1)"), ReadOnly);
        assert_eq!(c("SET @a = (SELECT 1 FOR UPDATE)"), Write);
    }

    #[test]
    fn command_codes() {
        assert_eq!(classify_command_code(0x08), Some(Dangerous));
        assert_eq!(classify_command_code(0x0c), Some(Dangerous));
        assert_eq!(classify_command_code(0x03), None);
    }
}
