//! The control plane's connections (mysql_async): production's processlist look-up and the
//! snapshot position read before a run. They follow the DSN's `ssl-mode` and `ssl-ca` exactly
//! as the replay's wire connections do ([`crate::wire::SslMode`]):
//! - `disabled` (or absent): plain TCP;
//! - `preferred`: TLS without checking the certificate when the server offers it, else plain;
//! - `required`: TLS without checking the certificate, or fail;
//! - `verify_ca`: TLS, the certificate chained to `ssl-ca` (its name not checked), or fail;
//! - `verify_identity`: as `verify_ca`, and the certificate names the host as given.
//!
//! There is no system trust store: the verifying modes need `ssl-ca` (refused before any
//! connection otherwise). A failed login says where it connected, with which mode and CA.
//! This module does not run the replay's sessions (those are [`crate::wire`]'s).

use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};

use crate::target::TargetDsn;
use crate::wire::SslMode;

/// A control-plane connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// `verify_ca` / `verify_identity` without `ssl-ca`.
    #[error("{server}: ssl-mode={mode} needs ssl-ca=FILE (there is no system trust store)")]
    NoCa {
        /// host:port.
        server: String,
        /// The DSN's ssl-mode.
        mode: &'static str,
    },
    /// The login failed (TCP, TLS or authentication).
    #[error("connecting to {server} ({tls}): {source}")]
    Connect {
        /// host:port.
        server: String,
        /// `plain` or the TLS mode and CA.
        tls: String,
        /// What mysql_async said.
        #[source]
        source: mysql_async::Error,
    },
    /// No login within the time allowed.
    #[error("connecting to {server} ({tls}): no answer in {after:?}")]
    Timeout {
        /// host:port.
        server: String,
        /// `plain` or the TLS mode and CA.
        tls: String,
        /// The time allowed.
        after: Duration,
    },
    /// A query on an open connection failed.
    #[error("{0}")]
    Query(#[from] mysql_async::Error),
}

/// The DSN's `ssl-mode` as the DSN spells it.
pub fn mode_name(m: SslMode) -> &'static str {
    match m {
        SslMode::Disabled => "disabled",
        SslMode::Preferred => "preferred",
        SslMode::Required => "required",
        SslMode::VerifyCa => "verify_ca",
        SslMode::VerifyIdentity => "verify_identity",
    }
}

fn describe(dsn: &TargetDsn, tls: bool) -> String {
    if !tls {
        return "plain".into();
    }
    match &dsn.ssl_ca {
        Some(ca) => format!(
            "TLS, ssl-mode={}, ssl-ca={}",
            mode_name(dsn.ssl_mode),
            ca.display()
        ),
        None => format!("TLS, ssl-mode={}", mode_name(dsn.ssl_mode)),
    }
}

/// mysql_async's TLS options for the DSN's mode (`None`: plain).
pub fn ssl_opts(dsn: &TargetDsn) -> Result<Option<SslOpts>, ControlError> {
    let base = SslOpts::default().with_disable_built_in_roots(true);
    let with_ca = || match &dsn.ssl_ca {
        Some(ca) => Ok(base.clone().with_root_certs(vec![ca.clone().into()])),
        None => Err(ControlError::NoCa {
            server: format!("{}:{}", dsn.host, dsn.port),
            mode: mode_name(dsn.ssl_mode),
        }),
    };
    Ok(match dsn.ssl_mode {
        SslMode::Disabled => None,
        // Certificates are not checked (the built-in roots stay: mysql_async's verifier
        // cannot be built without any).
        SslMode::Preferred | SslMode::Required => {
            Some(SslOpts::default().with_danger_accept_invalid_certs(true))
        }
        SslMode::VerifyCa => Some(with_ca()?.with_danger_skip_domain_validation(true)),
        SslMode::VerifyIdentity => Some(with_ca()?),
    })
}

/// mysql_async options for `dsn` as `user`/`password`/`db`, over TCP, with its TLS options, no
/// client-side statement cache and no extra queries at connect time.
pub fn opts(
    dsn: &TargetDsn,
    user: &str,
    password: Option<&str>,
    db: Option<&str>,
    ssl: Option<SslOpts>,
) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(dsn.host.clone())
        .tcp_port(dsn.port)
        .user(Some(user.to_owned()))
        .pass(password.map(str::to_owned))
        .db_name(db.map(str::to_owned))
        .prefer_socket(false)
        .stmt_cache_size(0)
        .max_allowed_packet(Some(1 << 30))
        .wait_timeout(Some(28800))
        .tcp_nodelay(true)
        .ssl_opts(ssl)
        .into()
}

/// Log in to `dsn` as its own user, following its `ssl-mode` (`preferred`: plain when the
/// server offers no TLS), within `timeout`.
pub async fn connect(dsn: &TargetDsn, timeout: Duration) -> Result<Conn, ControlError> {
    let ssl = ssl_opts(dsn)?;
    let server = format!("{}:{}", dsn.host, dsn.port);
    let attempt = |ssl: Option<SslOpts>| {
        let tls = describe(dsn, ssl.is_some());
        let o = opts(dsn, &dsn.user, dsn.password.as_deref(), None, ssl);
        let server = server.clone();
        async move {
            match tokio::time::timeout(timeout, Conn::new(o)).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(source)) => Err(ControlError::Connect {
                    server,
                    tls,
                    source,
                }),
                Err(_) => Err(ControlError::Timeout {
                    server,
                    tls,
                    after: timeout,
                }),
            }
        }
    };
    let tried_tls = ssl.is_some();
    match attempt(ssl).await {
        Err(ControlError::Connect {
            source: mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer),
            ..
        }) if tried_tls && dsn.ssl_mode == SslMode::Preferred => attempt(None).await,
        r => r,
    }
}
