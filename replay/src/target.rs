//! The test server and identities: DSN parsing, user/db maps, connection options per session, and
//! the production processlist lookup for sessions that were open before capture started.
//!
//! Passwords are never printed: [`TargetDsn`]'s `Debug` hides them. This module opens no
//! connection by itself except [`ProdLookup`], which queries production's processlist over a
//! [`crate::control`] connection (the DSN's `ssl-mode`, as the replay's connections).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The DSN is not `mysql://user[:pass]@host[:port][/db]`.
    #[error("bad DSN: {0}")]
    Dsn(String),
    /// A `prod=test[:password]` or `prod=test` map entry is malformed.
    #[error("bad map entry {0:?}: expected prod=test")]
    Map(String),
    /// A regular expression did not compile.
    #[error("bad regex: {0}")]
    Regex(#[from] regex::Error),
    /// Sampling percentage outside 0..=100, speed not positive, etc.
    #[error("bad value: {0}")]
    Value(String),
}

/// A MySQL server address with credentials: `mysql://user[:pass]@host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetDsn {
    /// Host name or address.
    pub host: String,
    /// TCP port (3306 by default).
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (never printed).
    pub password: Option<String>,
    /// Default database.
    pub db: Option<String>,
    /// `ssl-mode` of the replay connections (`?ssl-mode=` in the DSN; disabled when absent).
    pub ssl_mode: crate::wire::SslMode,
    /// `?ssl-ca=FILE`: CA certificates (PEM) for `ssl-mode=verify_ca|verify_identity`.
    pub ssl_ca: Option<std::path::PathBuf>,
}

impl fmt::Debug for TargetDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetDsn")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .finish()
    }
}

impl fmt::Display for TargetDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mysql://{}@{}:{}", self.user, self.host, self.port)?;
        if let Some(db) = &self.db {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TargetDsn {
    /// Parse a DSN; a missing password is taken from `MRTE_TARGET_PASSWORD`, then `MYSQL_PWD`.
    pub fn parse(dsn: &str) -> Result<Self, ConfigError> {
        let mut t = Self::parse_no_env(dsn)?;
        if t.password.is_none() {
            t.password = std::env::var("MRTE_TARGET_PASSWORD")
                .ok()
                .or_else(|| std::env::var("MYSQL_PWD").ok());
        }
        Ok(t)
    }

    /// Parse a DSN without looking at the environment.
    pub fn parse_no_env(dsn: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Dsn(redact(dsn));
        let rest = dsn.strip_prefix("mysql://").ok_or_else(bad)?;
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (cred, hostpart) = match rest.rfind('@') {
            Some(p) => (Some(&rest[..p]), &rest[p + 1..]),
            None => (None, rest),
        };
        let (user, password) = match cred {
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (pct_decode(u), Some(pct_decode(p))),
                None => (pct_decode(c), None),
            },
            None => ("root".to_owned(), None),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, Some(pct_decode(d))),
            Some((h, _)) => (h, None),
            None => (hostpart, None),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(bad)?;
            let port = match p.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None => 3306,
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (hostport.to_owned(), 3306),
            }
        };
        if host.is_empty() || user.is_empty() {
            return Err(bad());
        }
        let ssl_mode = crate::wire::SslMode::from_dsn(dsn).map_err(|_| bad())?;
        let ssl_ca =
            crate::wire::SslMode::ca_from_dsn(dsn).map(|p| pct_decode(&p.to_string_lossy()).into());
        Ok(Self {
            host,
            port,
            user,
            password,
            db,
            ssl_mode,
            ssl_ca,
        })
    }
}

fn redact(dsn: &str) -> String {
    match (dsn.find("://"), dsn.rfind('@')) {
        (Some(s), Some(a)) if a > s => {
            let cred = &dsn[s + 3..a];
            let user = cred.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &dsn[..s + 3], user, &dsn[a..])
        }
        _ => dsn.to_owned(),
    }
}

/// Test-side identity for a production user.
#[derive(Clone, PartialEq, Eq)]
pub struct MappedUser {
    /// Test user name.
    pub user: String,
    /// Password; `None` = the target DSN's password.
    pub password: Option<String>,
}

impl fmt::Debug for MappedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedUser")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `--user-map prod=test[:password]` and `--db-map prod=test`.
#[derive(Clone, Debug, Default)]
pub struct Identities {
    /// Production user → test user.
    pub users: HashMap<String, MappedUser>,
    /// Production database → test database.
    pub dbs: HashMap<String, String>,
}

impl Identities {
    /// Add one `prod=test[:password]` user mapping.
    pub fn add_user_map(&mut self, entry: &str) -> Result<(), ConfigError> {
        let (prod, test) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError::Map(entry.split(':').next().unwrap_or("").to_owned()))?;
        let (user, password) = match test.split_once(':') {
            Some((u, p)) => (u, Some(p.to_owned())),
            None => (test, None),
        };
        if prod.is_empty() || user.is_empty() {
            return Err(ConfigError::Map(prod.to_owned()));
        }
        self.users.insert(
            prod.to_owned(),
            MappedUser {
                user: user.to_owned(),
                password,
            },
        );
        Ok(())
    }

    /// Add one `prod=test` database mapping.
    pub fn add_db_map(&mut self, entry: &str) -> Result<(), ConfigError> {
        let (prod, test) = entry
            .split_once('=')
            .filter(|(p, t)| !p.is_empty() && !t.is_empty())
            .ok_or_else(|| ConfigError::Map(entry.to_owned()))?;
        self.dbs.insert(prod.to_owned(), test.to_owned());
        Ok(())
    }

    /// Test database for a production database.
    pub fn map_db<'a>(&'a self, prod: &'a str) -> &'a str {
        self.dbs.get(prod).map(String::as_str).unwrap_or(prod)
    }

    /// Test user and password for a production user (`None` → the target DSN's own).
    pub fn map_user<'a>(
        &'a self,
        prod: Option<&str>,
        target: &'a TargetDsn,
    ) -> (&'a str, Option<&'a str>) {
        match prod.and_then(|p| self.users.get(p)) {
            Some(m) => (
                m.user.as_str(),
                m.password.as_deref().or(target.password.as_deref()),
            ),
            None => (target.user.as_str(), target.password.as_deref()),
        }
    }
}

/// HOST, USER, DB of one processlist row.
type ProcessRow = (Option<String>, Option<String>, Option<String>);

/// User and database of a production connection found in `information_schema.PROCESSLIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProdSessionInfo {
    /// USER column.
    pub user: Option<String>,
    /// DB column.
    pub db: Option<String>,
}

/// Looks client `host:port` up in production's processlist (one lazily opened connection).
#[derive(Debug)]
pub struct ProdLookup {
    dsn: TargetDsn,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl ProdLookup {
    /// A lookup against `dsn` (not connected yet).
    pub fn new(dsn: TargetDsn) -> Self {
        Self {
            dsn,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Find the production session of `client`; `Ok(None)` when it is not (or no longer) listed.
    pub async fn lookup(
        &self,
        client: SocketAddr,
    ) -> Result<Option<ProdSessionInfo>, crate::control::ControlError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let conn = crate::control::connect(&self.dsn, Duration::from_secs(5)).await?;
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Ok(None);
        };
        // HOST is 'ip:port', or 'name:port' when the server resolves names: match the port,
        // then prefer the exact address, else accept a single candidate.
        let res: Result<Vec<ProcessRow>, _> = conn
            .query(format!(
                "SELECT HOST, USER, DB FROM information_schema.PROCESSLIST WHERE HOST LIKE '%:{}'",
                client.port()
            ))
            .await;
        match res {
            Ok(rows) => {
                let exact = format!("{}:{}", client.ip(), client.port());
                let pick = rows
                    .iter()
                    .position(|r| r.0.as_deref() == Some(exact.as_str()))
                    .or(if rows.len() == 1 { Some(0) } else { None });
                Ok(pick.map(|i| ProdSessionInfo {
                    user: rows[i].1.clone(),
                    db: rows[i].2.clone(),
                }))
            }
            Err(e) => {
                *guard = None;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_forms() {
        let t = TargetDsn::parse_no_env("mysql://u:p%40ss@127.0.0.1:3307/db1").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 3307);
        assert_eq!(t.user, "u");
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.db.as_deref(), Some("db1"));
        let t = TargetDsn::parse_no_env("mysql://root@localhost").unwrap();
        assert_eq!(
            (t.port, t.password.clone(), t.db.clone()),
            (3306, None, None)
        );
        let t = TargetDsn::parse_no_env("mysql://a:b@[::1]:3310/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db.clone()), ("::1", 3310, None));
        assert!(TargetDsn::parse_no_env("postgres://x@y").is_err());
        assert!(TargetDsn::parse_no_env("mysql://u:p@h:notaport").is_err());
    }

    #[test]
    fn password_never_printed() {
        let t = TargetDsn::parse_no_env("mysql://u:secret@h:1/d").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
        assert!(!format!("{t}").contains("secret"));
        let e = TargetDsn::parse_no_env("mysql://u:secret@h:xx").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let mut ids = Identities::default();
        ids.add_user_map("app=test:secret").unwrap();
        assert!(!format!("{ids:?}").contains("secret"));
    }

    #[test]
    fn maps() {
        let target = TargetDsn::parse_no_env("mysql://t:tp@h/d").unwrap();
        let mut ids = Identities::default();
        ids.add_user_map("app=tapp:pw").unwrap();
        ids.add_user_map("rep=trep").unwrap();
        ids.add_db_map("shop=shop_test").unwrap();
        assert!(ids.add_db_map("x").is_err());
        assert!(ids.add_user_map("=y").is_err());
        assert_eq!(ids.map_user(Some("app"), &target), ("tapp", Some("pw")));
        assert_eq!(ids.map_user(Some("rep"), &target), ("trep", Some("tp")));
        assert_eq!(ids.map_user(Some("other"), &target), ("t", Some("tp")));
        assert_eq!(ids.map_user(None, &target), ("t", Some("tp")));
        assert_eq!(ids.map_db("shop"), "shop_test");
        assert_eq!(ids.map_db("other"), "other");
    }
}
