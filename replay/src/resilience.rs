//! What the engine needs to survive faults: panic containment for one session's work, and the
//! production session state that a reconnect to the test server cannot rebuild.
//!
//! # What it does
//! - [`CatchUnwind`] polls a future inside `catch_unwind`, so a panic while replaying one command
//!   (a driver bug, an unexpected packet) ends as an error value the session task can count,
//!   instead of killing the task and leaving its commands unaccounted.
//! - [`ProdState`] follows, from the statements a session sent in production, what a fresh test
//!   connection would not have: an open transaction, temporary tables, user and session
//!   variables. The engine restores the default database and prepared statements itself.
//!
//! # What it does not do
//! It does not parse SQL: state is recognised from the leading keywords only (after comments and
//! whitespace), so `SELECT ... INTO @x` or a `SET` inside a stored procedure are not seen.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future whose panics come out as `Err(message)`. It takes an `Unpin` future: a boxed one,
/// or one pinned where it is awaited (`std::pin::pin!`, no allocation per use).
pub struct CatchUnwind<F>(F);

impl<F: Future + Unpin> CatchUnwind<F> {
    /// Wrap `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = Pin::new(&mut self.0);
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(p.as_ref()))),
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

/// Session state seen in production that a new test connection does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProdState {
    /// BEGIN / START TRANSACTION without COMMIT or ROLLBACK yet, or autocommit off.
    pub open_transaction: bool,
    /// `CREATE TEMPORARY TABLE` seen.
    pub temporary_tables: bool,
    /// `SET @var` seen.
    pub user_variables: bool,
    /// `SET [SESSION] var`, `SET NAMES`, ... seen.
    pub session_variables: bool,
    autocommit_off: bool,
}

impl ProdState {
    /// Follow one statement that production executed.
    pub fn observe(&mut self, sql: &[u8]) {
        // The usual statement, a plain SELECT, holds no state: known without the word reader.
        if sql.len() > 6 && sql[..6].eq_ignore_ascii_case(b"SELECT") && sql[6].is_ascii_whitespace()
        {
            return;
        }
        let mut words = Words::new(sql);
        let Some(first) = words.next() else {
            return;
        };
        match first.as_slice() {
            b"BEGIN" => self.open_transaction = true,
            b"START" if words.next().as_deref() == Some(b"TRANSACTION") => {
                self.open_transaction = true
            }
            b"COMMIT" | b"ROLLBACK" => {
                let rest = words.next();
                if rest.as_deref() != Some(b"TO") {
                    self.open_transaction = self.autocommit_off;
                }
            }
            b"CREATE" if words.next().as_deref() == Some(b"TEMPORARY") => {
                self.temporary_tables = true;
            }
            b"SET" => {
                if contains_user_var(sql) {
                    self.user_variables = true;
                }
                let upper = sql.to_ascii_uppercase();
                if find(&upper, b"AUTOCOMMIT").is_some() {
                    self.autocommit_off = find(&upper, b"=0").is_some()
                        || find(&upper, b"= 0").is_some()
                        || find(&upper, b"OFF").is_some();
                    self.open_transaction = self.autocommit_off;
                }
                if !contains_user_var(sql) || find(&upper, b"@@").is_some() {
                    self.session_variables = true;
                }
            }
            _ => {}
        }
    }

    /// The kinds of state held, as report reasons.
    pub fn reasons(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.open_transaction {
            v.push("open_transaction");
        }
        if self.temporary_tables {
            v.push("temporary_tables");
        }
        if self.user_variables {
            v.push("user_variables");
        }
        if self.session_variables {
            v.push("session_variables");
        }
        v
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `@name` that is not `@@name`, outside quotes.
fn contains_user_var(sql: &[u8]) -> bool {
    let mut quote = None;
    let mut i = 0;
    while i < sql.len() {
        let c = sql[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' || c == b'`' => quote = Some(c),
            None if c == b'@' => {
                if sql.get(i + 1) == Some(&b'@') {
                    i += 2;
                    continue;
                }
                return true;
            }
            None => {}
        }
        i += 1;
    }
    false
}

/// Upper-cased leading words, skipping whitespace and comments.
struct Words<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Words<'a> {
    fn new(s: &'a [u8]) -> Self {
        Self { s, i: 0 }
    }

    fn skip_blank(&mut self) {
        loop {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
            let rest = &self.s[self.i.min(self.s.len())..];
            if rest.starts_with(b"/*") {
                match find(&rest[2..], b"*/") {
                    Some(p) => self.i += p + 4,
                    None => self.i = self.s.len(),
                }
            } else if rest.starts_with(b"-- ") || rest.starts_with(b"#") {
                match rest.iter().position(|&c| c == b'\n') {
                    Some(p) => self.i += p + 1,
                    None => self.i = self.s.len(),
                }
            } else {
                return;
            }
        }
    }
}

/// A leading word, upper-cased inline (no allocation): a word longer than the buffer is kept as
/// a non-word that equals no keyword.
#[derive(Clone, Copy)]
struct Word {
    buf: [u8; 16],
    len: usize,
}

impl std::ops::Deref for Word {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self.buf.get(..self.len) {
            Some(w) => w,
            None => b"\0",
        }
    }
}

impl Word {
    fn as_slice(&self) -> &[u8] {
        self
    }
}

impl Iterator for Words<'_> {
    type Item = Word;

    fn next(&mut self) -> Option<Word> {
        self.skip_blank();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        let w = &self.s[start..self.i];
        let mut buf = [0u8; 16];
        if let Some(b) = buf.get_mut(..w.len()) {
            b.copy_from_slice(w);
            b.make_ascii_uppercase();
        }
        (self.i > start).then_some(Word { buf, len: w.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(stmts: &[&str]) -> ProdState {
        let mut s = ProdState::default();
        for q in stmts {
            s.observe(q.as_bytes());
        }
        s
    }

    #[test]
    fn transactions_open_and_close() {
        assert!(after(&["BEGIN"]).open_transaction);
        assert!(after(&["/* app */ start  transaction read only"]).open_transaction);
        assert!(!after(&["BEGIN", "SELECT 1", "commit"]).open_transaction);
        assert!(after(&["BEGIN", "ROLLBACK TO SAVEPOINT a"]).open_transaction);
        assert!(!after(&["START TRANSACTION", "ROLLBACK"]).open_transaction);
        assert!(after(&["SET autocommit=0"]).open_transaction);
        assert!(!after(&["SET autocommit=0", "SET autocommit = 1"]).open_transaction);
    }

    #[test]
    fn variables_and_temporary_tables() {
        let s = after(&["SET @x := 1"]);
        assert!(s.user_variables && !s.session_variables);
        let s = after(&["SET NAMES utf8mb4"]);
        assert!(!s.user_variables && s.session_variables);
        let s = after(&["set @@session.sql_mode = ''"]);
        assert!(!s.user_variables && s.session_variables);
        assert!(after(&["CREATE TEMPORARY TABLE t (a INT)"]).temporary_tables);
        assert_eq!(
            after(&["SELECT '@x'", "CREATE TABLE t (a INT)"]),
            ProdState::default()
        );
        assert_eq!(
            after(&["SET @a=1", "BEGIN"]).reasons(),
            vec!["open_transaction", "user_variables"]
        );
    }

    #[test]
    fn odd_bytes_never_panic() {
        for s in [
            &b""[..],
            b"/*",
            b"/* x",
            b"-- ",
            b"#",
            b"@",
            b"SET",
            b"\xff\xfe SET @",
        ] {
            ProdState::default().observe(s);
        }
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let r = rt.block_on(CatchUnwind::new(std::pin::pin!(async {
            if std::hint::black_box(true) {
                panic!("boom {}", 7);
            }
            1
        })));
        assert_eq!(r, Err("boom 7".to_owned()));
        assert_eq!(rt.block_on(CatchUnwind::new(Box::pin(async { 2 }))), Ok(2));
    }
}
