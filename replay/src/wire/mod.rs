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

/// Capability flags (client and server, low 32 bits).
pub mod caps {
    /// CLIENT_LONG_PASSWORD (CLIENT_MYSQL to MariaDB: unset means MariaDB extended caps).
    pub const LONG_PASSWORD: u32 = 1;
    /// CLIENT_FOUND_ROWS.
    pub const FOUND_ROWS: u32 = 1 << 1;
    /// CLIENT_CONNECT_WITH_DB.
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    /// CLIENT_COMPRESS.
    pub const COMPRESS: u32 = 1 << 5;
    /// CLIENT_LOCAL_FILES.
    pub const LOCAL_FILES: u32 = 1 << 7;
    /// CLIENT_PROTOCOL_41.
    pub const PROTOCOL_41: u32 = 1 << 9;
    /// CLIENT_SSL.
    pub const SSL: u32 = 1 << 11;
    /// CLIENT_TRANSACTIONS.
    pub const TRANSACTIONS: u32 = 1 << 13;
    /// CLIENT_SECURE_CONNECTION.
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    /// CLIENT_MULTI_STATEMENTS.
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    /// CLIENT_MULTI_RESULTS.
    pub const MULTI_RESULTS: u32 = 1 << 17;
    /// CLIENT_PS_MULTI_RESULTS.
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    /// CLIENT_PLUGIN_AUTH.
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    /// CLIENT_CONNECT_ATTRS.
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    /// CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.
    pub const PLUGIN_AUTH_LENENC: u32 = 1 << 21;
    /// CLIENT_SESSION_TRACK.
    pub const SESSION_TRACK: u32 = 1 << 23;
    /// CLIENT_DEPRECATE_EOF.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    /// CLIENT_OPTIONAL_RESULTSET_METADATA.
    pub const OPTIONAL_METADATA: u32 = 1 << 25;
    /// CLIENT_ZSTD_COMPRESSION_ALGORITHM.
    pub const ZSTD: u32 = 1 << 26;
    /// CLIENT_QUERY_ATTRIBUTES.
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    /// CLIENT_PROGRESS (obsolete bit).
    pub const PROGRESS_OBSOLETE: u32 = 1 << 29;
    /// CLIENT_SSL_VERIFY_SERVER_CERT.
    pub const SSL_VERIFY: u32 = 1 << 30;

    /// MariaDB extended: progress reports (ERR 0xFFFF packets mid-command).
    pub const MARIADB_PROGRESS: u32 = 1;
    /// MariaDB extended: COM_STMT_BULK_EXECUTE.
    pub const MARIADB_BULK: u32 = 1 << 2;
    /// MariaDB extended: extended type info in column definitions.
    pub const MARIADB_EXTENDED_METADATA: u32 = 1 << 3;
    /// MariaDB extended: metadata skipped in EXECUTE responses when unchanged.
    pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
}

/// Server status flags.
pub mod status {
    /// SERVER_MORE_RESULTS_EXISTS.
    pub const MORE_RESULTS: u16 = 0x0008;
    /// SERVER_STATUS_CURSOR_EXISTS.
    pub const CURSOR_EXISTS: u16 = 0x0040;
}

/// Command bytes this module treats specially.
pub mod com {
    /// COM_QUIT.
    pub const QUIT: u8 = 0x01;
    /// COM_INIT_DB.
    pub const INIT_DB: u8 = 0x02;
    /// COM_QUERY.
    pub const QUERY: u8 = 0x03;
    /// COM_FIELD_LIST.
    pub const FIELD_LIST: u8 = 0x04;
    /// COM_STATISTICS.
    pub const STATISTICS: u8 = 0x09;
    /// COM_PROCESS_INFO.
    pub const PROCESS_INFO: u8 = 0x0a;
    /// COM_PING.
    pub const PING: u8 = 0x0e;
    /// COM_CHANGE_USER.
    pub const CHANGE_USER: u8 = 0x11;
    /// COM_STMT_PREPARE.
    pub const STMT_PREPARE: u8 = 0x16;
    /// COM_STMT_EXECUTE.
    pub const STMT_EXECUTE: u8 = 0x17;
    /// COM_STMT_SEND_LONG_DATA.
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    /// COM_STMT_CLOSE.
    pub const STMT_CLOSE: u8 = 0x19;
    /// COM_STMT_RESET.
    pub const STMT_RESET: u8 = 0x1a;
    /// COM_SET_OPTION.
    pub const SET_OPTION: u8 = 0x1b;
    /// COM_STMT_FETCH.
    pub const STMT_FETCH: u8 = 0x1c;
    /// COM_RESET_CONNECTION.
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// COM_STMT_BULK_EXECUTE (MariaDB).
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}
