//! Which sessions and commands are replayed: db/user include/exclude lists, SQL regexes,
//! per-session sampling and the safety classes (`--read-only`, `--allow-dangerous`).
//!
//! Every "no" comes with a [`SkipReason`] so the engine can count it. This module does no I/O.

use std::hash::{Hash, Hasher};

use mrte_capture::event::FlowKey;
use regex::bytes::Regex;
use serde::Serialize;

use crate::classify::{classify, StatementClass};

/// Why a command (or session) was not replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `--read-only` and the statement may write.
    ReadOnly,
    /// Changes users/grants/server state; needs `--allow-dangerous`.
    Dangerous,
    /// Database not in `--include-db` or in `--exclude-db`.
    FilterDb,
    /// User not in `--include-user`.
    FilterUser,
    /// SQL text did not match `--filter` or matched `--exclude`.
    FilterRegex,
    /// Session not in the `--sample` percentage.
    SampledOut,
    /// The session negotiated TLS: nothing decodable.
    Tls,
    /// The production login failed.
    LoginFailed,
    /// Replication protocol (binlog dump, register replica).
    Replication,
    /// A command byte MySQL does not define.
    UnknownCommand,
    /// COM_FIELD_LIST (deprecated; not replayed).
    FieldList,
    /// COM_STATISTICS (not replayed).
    Statistics,
    /// COM_STMT_FETCH (cursor fetch; the execute already read all rows).
    StmtFetch,
    /// COM_SET_OPTION (the replay connection always has multi-statements on).
    SetOption,
    /// COM_STMT_RESET (emulated client-side by dropping pending long data).
    StmtReset,
    /// Another command the replayer does not send (COM_SLEEP, COM_DEBUG, COM_TIME, ...).
    Unsupported,
    /// The request was larger than the capture's size cap; its payload was not kept.
    TooLarge,
    /// Execute/close of a statement whose PREPARE was itself skipped.
    StatementSkipped,
    /// Left in the ring when the engine was shut down.
    Shutdown,
    /// COM_QUIT or COM_STMT_CLOSE with no test connection or statement: nothing to send.
    NothingToSend,
    /// LOAD DATA LOCAL INFILE: the client's file is not in the capture.
    LocalInfile,
}

impl SkipReason {
    /// snake_case name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::ReadOnly => "read_only",
            SkipReason::Dangerous => "dangerous",
            SkipReason::FilterDb => "filter_db",
            SkipReason::FilterUser => "filter_user",
            SkipReason::FilterRegex => "filter_regex",
            SkipReason::SampledOut => "sampled_out",
            SkipReason::Tls => "tls",
            SkipReason::LoginFailed => "login_failed",
            SkipReason::Replication => "replication",
            SkipReason::UnknownCommand => "unknown_command",
            SkipReason::FieldList => "field_list",
            SkipReason::Statistics => "statistics",
            SkipReason::StmtFetch => "stmt_fetch",
            SkipReason::SetOption => "set_option",
            SkipReason::StmtReset => "stmt_reset",
            SkipReason::Unsupported => "unsupported",
            SkipReason::TooLarge => "too_large",
            SkipReason::StatementSkipped => "statement_skipped",
            SkipReason::Shutdown => "shutdown",
            SkipReason::NothingToSend => "nothing_to_send",
            SkipReason::LocalInfile => "local_infile",
        }
    }
}

/// Replay filters, compiled.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Only these production databases (empty = all).
    pub include_db: Vec<String>,
    /// Never these production databases.
    pub exclude_db: Vec<String>,
    /// Only these production users (empty = all).
    pub include_user: Vec<String>,
    /// Only SQL matching this.
    pub filter: Option<Regex>,
    /// Never SQL matching this.
    pub exclude: Option<Regex>,
    /// Percentage of sessions replayed, 0..=100.
    pub sample_pct: f64,
    /// Only statements that cannot write.
    pub read_only: bool,
    /// Allow dangerous statements.
    pub allow_dangerous: bool,
}

/// Filter options as given on the command line (uncompiled).
#[derive(Clone, Debug, Default)]
pub struct FilterArgs {
    /// `--include-db` (repeatable).
    pub include_db: Vec<String>,
    /// `--exclude-db` (repeatable).
    pub exclude_db: Vec<String>,
    /// `--include-user` (repeatable).
    pub include_user: Vec<String>,
    /// `--filter REGEX`.
    pub filter: Option<String>,
    /// `--exclude REGEX`.
    pub exclude: Option<String>,
    /// `--sample PCT` (default 100).
    pub sample_pct: Option<f64>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--allow-dangerous`.
    pub allow_dangerous: bool,
}

impl Filters {
    /// Compile command-line filter options (regexes, percentage range).
    pub fn from_args(a: &FilterArgs) -> Result<Self, crate::target::ConfigError> {
        let sample_pct = a.sample_pct.unwrap_or(100.0);
        if !(0.0..=100.0).contains(&sample_pct) {
            return Err(crate::target::ConfigError::Value(format!(
                "--sample {sample_pct}: expected 0..=100"
            )));
        }
        Ok(Self {
            include_db: a.include_db.clone(),
            exclude_db: a.exclude_db.clone(),
            include_user: a.include_user.clone(),
            filter: a.filter.as_deref().map(Regex::new).transpose()?,
            exclude: a.exclude.as_deref().map(Regex::new).transpose()?,
            sample_pct,
            read_only: a.read_only,
            allow_dangerous: a.allow_dangerous,
        })
    }

    /// No filtering: everything but dangerous statements.
    pub fn all() -> Self {
        Self {
            sample_pct: 100.0,
            ..Self::default()
        }
    }

    /// Whether the session with this flow is in the sample (stable across runs).
    pub fn session_sampled(&self, key: &FlowKey) -> bool {
        if self.sample_pct >= 100.0 {
            return true;
        }
        if self.sample_pct <= 0.0 {
            return false;
        }
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        key.hash(&mut h);
        let bucket = (h.finish() % 10_000) as f64;
        bucket < self.sample_pct * 100.0
    }

    /// Check the session's database and user (production names).
    pub fn check_identity(&self, db: Option<&str>, user: Option<&str>) -> Option<SkipReason> {
        if !self.include_db.is_empty()
            && !db.is_some_and(|d| self.include_db.iter().any(|x| x == d))
        {
            return Some(SkipReason::FilterDb);
        }
        if db.is_some_and(|d| self.exclude_db.iter().any(|x| x == d)) {
            return Some(SkipReason::FilterDb);
        }
        if !self.include_user.is_empty()
            && !user.is_some_and(|u| self.include_user.iter().any(|x| x == u))
        {
            return Some(SkipReason::FilterUser);
        }
        None
    }

    /// Check an SQL text (COM_QUERY, or the PREPARE text of a statement).
    pub fn check_sql(&self, sql: &[u8]) -> Option<SkipReason> {
        if let Some(f) = &self.filter {
            if !f.is_match(sql) {
                return Some(SkipReason::FilterRegex);
            }
        }
        if let Some(x) = &self.exclude {
            if x.is_match(sql) {
                return Some(SkipReason::FilterRegex);
            }
        }
        self.check_class(classify(sql))
    }

    /// Check a safety class against `read_only` / `allow_dangerous`.
    pub fn check_class(&self, class: StatementClass) -> Option<SkipReason> {
        match class {
            StatementClass::Dangerous if !self.allow_dangerous => Some(SkipReason::Dangerous),
            StatementClass::Dangerous | StatementClass::Write if self.read_only => {
                Some(SkipReason::ReadOnly)
            }
            _ => None,
        }
    }
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            client: format!("198.18.0.1:{port}").parse().unwrap(),
            server: "198.18.0.2:3306".parse().unwrap(),
        }
    }

    #[test]
    fn sampling_is_stable_and_roughly_proportional() {
        let f = Filters {
            sample_pct: 25.0,
            ..Filters::all()
        };
        let n = (0..4000u16)
            .filter(|p| f.session_sampled(&key(10_000 + p)))
            .count();
        assert!((800..1200).contains(&n), "{n}");
        for p in 0..100 {
            assert_eq!(f.session_sampled(&key(p)), f.session_sampled(&key(p)));
        }
        let none = Filters {
            sample_pct: 0.0,
            ..Filters::all()
        };
        assert!(!none.session_sampled(&key(1)));
        assert!(Filters::all().session_sampled(&key(1)));
    }

    #[test]
    fn identity_and_sql() {
        let f = Filters {
            include_db: vec!["a".into()],
            exclude_db: vec!["b".into()],
            include_user: vec!["app".into()],
            filter: Some(Regex::new("(?i)select").unwrap()),
            exclude: Some(Regex::new("secret").unwrap()),
            ..Filters::all()
        };
        assert_eq!(f.check_identity(Some("a"), Some("app")), None);
        assert_eq!(
            f.check_identity(None, Some("app")),
            Some(SkipReason::FilterDb)
        );
        assert_eq!(
            f.check_identity(Some("b"), Some("app")),
            Some(SkipReason::FilterDb)
        );
        assert_eq!(
            f.check_identity(Some("a"), Some("x")),
            Some(SkipReason::FilterUser)
        );
        assert_eq!(f.check_sql(b"SELECT 1"), None);
        assert_eq!(f.check_sql(b"update t"), Some(SkipReason::FilterRegex));
        assert_eq!(f.check_sql(b"select secret"), Some(SkipReason::FilterRegex));
    }

    #[test]
    fn from_args_validates() {
        let ok = Filters::from_args(&FilterArgs {
            filter: Some("^select".into()),
            sample_pct: Some(50.0),
            read_only: true,
            ..FilterArgs::default()
        })
        .unwrap();
        assert!(ok.read_only && ok.filter.is_some() && ok.sample_pct == 50.0);
        assert!(Filters::from_args(&FilterArgs {
            sample_pct: Some(101.0),
            ..FilterArgs::default()
        })
        .is_err());
        assert!(Filters::from_args(&FilterArgs {
            exclude: Some("(".into()),
            ..FilterArgs::default()
        })
        .is_err());
        assert_eq!(
            Filters::from_args(&FilterArgs::default())
                .unwrap()
                .sample_pct,
            100.0
        );
    }

    #[test]
    fn safety() {
        let f = Filters::all();
        assert_eq!(f.check_sql(b"DROP USER x"), Some(SkipReason::Dangerous));
        assert_eq!(f.check_sql(b"DELETE FROM t"), None);
        let ro = Filters {
            read_only: true,
            ..Filters::all()
        };
        assert_eq!(ro.check_sql(b"DELETE FROM t"), Some(SkipReason::ReadOnly));
        assert_eq!(ro.check_sql(b"SELECT 1"), None);
        assert_eq!(
            ro.check_sql(b"GRANT ALL ON *.* TO x"),
            Some(SkipReason::Dangerous)
        );
        let danger = Filters {
            allow_dangerous: true,
            ..Filters::all()
        };
        assert_eq!(danger.check_sql(b"KILL 3"), None);
        let danger_ro = Filters {
            allow_dangerous: true,
            read_only: true,
            ..Filters::all()
        };
        assert_eq!(danger_ro.check_sql(b"KILL 3"), Some(SkipReason::ReadOnly));
    }
}
