//! A replay connection that speaks the MySQL client protocol itself, so that captured commands
//! go to the test server byte for byte and responses are counted and hashed, never decoded into
//! values.
//!
//! - [`packet`]: framing, sequence ids, 16 MiB+ splitting, the compression layer (sans-IO).
//! - [`auth`]: handshake and authentication state machine (sans-IO), on mysql_common's packet
//!   types and auth plugins: mysql_native_password, caching_sha2_password (fast and full auth,
//!   RSA key request over plain TCP), sha256_password, MariaDB client_ed25519, auth switch.
//! - [`response`]: the response side, on the capture decoder's sans-IO
//!   `mrte_capture::mysql::response::ResponseReader` (the one response state machine): OK / ERR /
//!   EOF, result sets, PREPARE_OK, LOCAL INFILE, row counts and the same row / column-definition
//!   checksums as the capture computes for prod.
//! - [`conn`]: the thin tokio executor: one TCP connection, `send` / `read_response` (several
//!   commands may be outstanding), `send_raw`, `change_user`.
//!
//! - [`tls`]: the byte stream, plain or TLS (rustls; `ssl-mode=preferred|required` in the DSN
//!   encrypt without checking the server certificate, `verify_ca|verify_identity` with
//!   `ssl-ca=FILE` check its chain, and for `verify_identity` its name).
//!
//! It does not rewrite commands (statement ids, schema names): the caller does.

pub mod auth;
pub mod conn;
pub mod packet;
pub mod response;
pub mod tls;

pub use auth::{ConnectParams, SslMode};
pub use conn::WireConn;
pub use response::{Expect, Reply, RowHash};

/// Errors of the wire connection.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection.
    #[error("server closed the connection")]
    Closed,
    /// The server refused the login (wrong password, unknown user, no access to the db...).
    #[error("authentication failed: {code} {message}")]
    Auth {
        /// Server error code (1045 for a wrong password).
        code: u16,
        /// Server error message.
        message: String,
    },
    /// The server asked for an auth plugin this client does not implement.
    #[error("unsupported auth plugin {0:?}")]
    UnsupportedPlugin(String),
    /// An auth plugin step failed (bad challenge, bad RSA key, empty password where one is
    /// required...).
    #[error("auth plugin {plugin}: {message}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// `ssl-mode=required` but the server does not offer TLS, or TLS is not built in.
    #[error("TLS required but not available: {0}")]
    TlsUnavailable(&'static str),
    /// A malformed or unexpected packet.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A packet over the configured maximum.
    #[error("packet of {0} bytes over the maximum")]
    PacketTooLarge(usize),
    /// A compressed frame did not inflate to its announced length.
    #[error("compressed frame does not inflate")]
    Inflate,
    /// `read_response` with no command outstanding.
    #[error("no command outstanding")]
    NothingOutstanding,
    /// A connect or response timeout.
    #[error("timed out")]
    Timeout,
}

impl WireError {
    /// A short stable name for counters ("auth", "io", "closed", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Io(_) => "io",
            WireError::Closed => "closed",
            WireError::Auth { .. } => "auth",
            WireError::UnsupportedPlugin(_) => "unsupported_plugin",
            WireError::Plugin { .. } => "auth_plugin",
            WireError::TlsUnavailable(_) => "tls_unavailable",
            WireError::Protocol(_) => "protocol",
            WireError::PacketTooLarge(_) => "packet_too_large",
            WireError::Inflate => "inflate",
            WireError::NothingOutstanding => "nothing_outstanding",
            WireError::Timeout => "timeout",
        }
    }
}

/// Command bytes, capability flags (MariaDB's extended ones too) and status flags: the
/// workspace's one table, in the capture crate.
pub use mrte_capture::mysql::consts::{caps, com, status};
