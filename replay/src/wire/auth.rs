//! Handshake and authentication, sans-IO: fed the server's packets, yields the packets to send.
//!
//! [`Handshake`] reads HandshakeV10, negotiates capabilities (what the production client asked
//! for, masked to what the test server offers, minus what this client cannot follow such as
//! MariaDB progress reports or cached metadata), answers HandshakeResponse41 (or an SSLRequest
//! first when TLS is wanted) and runs an [`AuthExchange`] to the final OK. [`AuthExchange`] is
//! also what COM_CHANGE_USER re-runs. The plugin arithmetic is mysql_common's (`auth::plugins`);
//! this module does the packet handling around it: auth switch, auth more data, errors.

use std::fmt;

use mysql_common::auth::plugins::{AuthProc, ChallengeResponsePlugin, Context};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket};

use super::caps::*;
use super::WireError;

/// `ssl-mode` of the test-server DSN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// TLS when the server offers it, else plain.
    Preferred,
    /// TLS or fail.
    Required,
    /// TLS or fail, the server's certificate chained to the CA given with `ssl-ca` (its name
    /// is not checked).
    VerifyCa,
    /// As [`Self::VerifyCa`], and the certificate names the host connected to.
    VerifyIdentity,
}

impl SslMode {
    /// `ssl-mode` (or `ssl_mode`, `sslmode`) from a DSN's query string; absent → disabled.
    pub fn from_dsn(dsn: &str) -> Result<Self, WireError> {
        let Some((_, q)) = dsn.split_once('?') else {
            return Ok(Self::Disabled);
        };
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if matches!(k, "ssl-mode" | "ssl_mode" | "sslmode") {
                return match v.to_ascii_lowercase().as_str() {
                    "disabled" | "disable" => Ok(Self::Disabled),
                    "preferred" | "prefer" => Ok(Self::Preferred),
                    "required" | "require" => Ok(Self::Required),
                    "verify_ca" | "verify-ca" => Ok(Self::VerifyCa),
                    "verify_identity" | "verify-identity" | "verify-full" => {
                        Ok(Self::VerifyIdentity)
                    }
                    _ => Err(WireError::Protocol(format!("bad ssl-mode {v:?}"))),
                };
            }
        }
        Ok(Self::Disabled)
    }

    /// `ssl-ca` (or `ssl_ca`, `sslrootcert`) from a DSN's query string: the PEM file of the
    /// CA certificates `verify_ca` / `verify_identity` trust.
    pub fn ca_from_dsn(dsn: &str) -> Option<std::path::PathBuf> {
        let (_, q) = dsn.split_once('?')?;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            matches!(k, "ssl-ca" | "ssl_ca" | "sslrootcert").then(|| v.into())
        })
    }

    /// TLS is mandatory.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Required | Self::VerifyCa | Self::VerifyIdentity)
    }
}

/// Capabilities asked for when the production client's are unknown (session joined mid-stream):
/// what MariaDB Connector/C asks for by default.
pub const DEFAULT_CAPABILITIES: u32 = LONG_PASSWORD
    | (1 << 2) // LONG_FLAG
    | LOCAL_FILES
    | PROTOCOL_41
    | TRANSACTIONS
    | SECURE_CONNECTION
    | MULTI_RESULTS
    | PS_MULTI_RESULTS
    | PLUGIN_AUTH
    | PLUGIN_AUTH_LENENC;

/// What to log in with and how the session should look.
#[derive(Clone)]
pub struct ConnectParams {
    /// User name.
    pub user: String,
    /// Password (never printed).
    pub password: String,
    /// Default database.
    pub db: Option<String>,
    /// Capability flags the production client asked for (low 32 bits).
    pub capabilities: u32,
    /// MariaDB extended capability flags the production client asked for.
    pub mariadb_capabilities: u32,
    /// Collation id (one byte goes in the handshake; ids over 255 use the server's default).
    pub collation: u16,
    /// Connection attributes, sent in this order.
    pub attributes: Vec<(String, String)>,
    /// Max packet size announced and accepted.
    pub max_packet: u32,
    /// TLS to the test server.
    pub ssl_mode: SslMode,
    /// CA certificates (PEM file) for [`SslMode::VerifyCa`] / [`SslMode::VerifyIdentity`].
    pub ssl_ca: Option<std::path::PathBuf>,
    /// The name the certificate must carry under [`SslMode::VerifyIdentity`] (the target's
    /// host as given); `None`: the address connected to.
    pub ssl_name: Option<String>,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("user", &self.user)
            .field("password", &"***")
            .field("db", &self.db)
            .field("capabilities", &format_args!("{:#x}", self.capabilities))
            .field("collation", &self.collation)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_ca", &self.ssl_ca)
            .finish()
    }
}

impl ConnectParams {
    /// Documented defaults: [`DEFAULT_CAPABILITIES`], utf8mb4_general_ci, 1 GiB max packet.
    pub fn new(user: &str, password: &str, db: Option<&str>) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
            db: db.map(str::to_owned),
            capabilities: DEFAULT_CAPABILITIES,
            mariadb_capabilities: 0,
            collation: 45,
            attributes: Vec::new(),
            max_packet: 1 << 30,
            ssl_mode: SslMode::Disabled,
            ssl_ca: None,
            ssl_name: None,
        }
    }
}

/// The client capabilities to send: the production client's, plus what this client needs,
/// minus what it cannot follow, masked to the server's. Returns (capabilities, MariaDB extended).
pub fn negotiate(p: &ConnectParams, server: u32, server_ext: u32, tls: bool) -> (u32, u32) {
    let need = PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | PLUGIN_AUTH_LENENC;
    let never = SSL
        | SSL_VERIFY_SERVER_CERT
        | ZSTD_COMPRESSION
        | OPTIONAL_RESULTSET_METADATA
        | PROGRESS_OBSOLETE
        | CONNECT_WITH_DB
        | CONNECT_ATTRS
        | (1 << 31); // REMEMBER_OPTIONS
    let mut c = (p.capabilities | need) & !never;
    if p.db.is_some() {
        c |= CONNECT_WITH_DB;
    }
    if !p.attributes.is_empty() {
        c |= CONNECT_ATTRS;
    }
    if tls {
        c |= SSL;
    }
    let mariadb = server & LONG_PASSWORD == 0;
    c &= server | if mariadb { 0 } else { LONG_PASSWORD };
    let ext = if mariadb {
        p.mariadb_capabilities & server_ext & !(MARIADB_PROGRESS | MARIADB_CACHE_METADATA)
    } else {
        0
    };
    (c, ext)
}

/// The test server as its greeting described it.
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    /// Version string.
    pub version: String,
    /// Connection (thread) id.
    pub connection_id: u32,
    /// Capability flags offered.
    pub capabilities: u32,
    /// MariaDB extended capability flags offered.
    pub mariadb_capabilities: u32,
    /// Default collation.
    pub collation: u8,
    /// 20-byte scramble of the greeting (COM_CHANGE_USER's first answer uses it).
    pub scramble: Vec<u8>,
    /// Default auth plugin.
    pub plugin: String,
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    pass: &'a [u8],
    scramble: &'a [u8],
    tls: bool,
}

impl Context for Ctx<'_> {
    fn pass(&self) -> &[u8] {
        self.pass
    }
    fn is_ipc_transport(&self) -> bool {
        false
    }
    fn is_tls_transport(&self) -> bool {
        self.tls
    }
    fn scramble(&self) -> &[u8] {
        self.scramble
    }
    fn server_key_pem(&self) -> Option<&[u8]> {
        None
    }
}

/// What the auth exchange wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this payload (sequence id: the received one + 1), then read again.
    Reply(Vec<u8>),
    /// Read the next packet.
    Wait,
    /// Logged in.
    Ok,
}

/// One plugin-driven exchange up to OK or ERR.
pub struct AuthExchange {
    plugin: String,
    proc: AuthProc,
    scramble: Vec<u8>,
    password: Vec<u8>,
    tls: bool,
}

impl fmt::Debug for AuthExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthExchange")
            .field("plugin", &self.plugin)
            .finish()
    }
}

fn plugin_name(p: &AuthPlugin<'_>) -> String {
    String::from_utf8_lossy(p.as_bytes()).into_owned()
}

impl AuthExchange {
    /// Start with `plugin` and `scramble`; returns the exchange and the first auth response.
    pub fn start(
        plugin: &[u8],
        scramble: &[u8],
        password: &str,
        tls: bool,
    ) -> Result<(Self, Vec<u8>), WireError> {
        let p = AuthPlugin::from_bytes(plugin);
        let name = plugin_name(&p);
        let proc = AuthProc::init(&p).map_err(|_| WireError::UnsupportedPlugin(name.clone()))?;
        let mut x = Self {
            plugin: name,
            proc,
            scramble: scramble.to_vec(),
            password: password.as_bytes().to_vec(),
            tls,
        };
        let first = x.run(scramble.to_vec())?.unwrap_or_default();
        Ok((x, first))
    }

    /// Plugin in use.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    fn run(&mut self, challenge: Vec<u8>) -> Result<Option<Vec<u8>>, WireError> {
        let ctx = Ctx {
            pass: &self.password,
            scramble: &self.scramble,
            tls: self.tls,
        };
        match self.proc.run(ctx, &challenge) {
            Ok(r) => Ok(r.data().map(<[u8]>::to_vec)),
            Err(e) => Err(WireError::Plugin {
                plugin: self.plugin.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Feed one server packet of the exchange.
    pub fn on_packet(&mut self, payload: &[u8]) -> Result<AuthStep, WireError> {
        match payload.first() {
            Some(0x00) => Ok(AuthStep::Ok),
            Some(0xff) => {
                let (code, message) = parse_err(payload);
                Err(WireError::Auth { code, message })
            }
            Some(0xfe) if payload.len() == 1 => {
                Err(WireError::UnsupportedPlugin("mysql_old_password".into()))
            }
            Some(0xfe) => {
                let sw: AuthSwitchRequest<'_> = ParseBuf(payload)
                    .parse(())
                    .map_err(|e| WireError::Protocol(format!("auth switch request: {e}")))?;
                let p = sw.auth_plugin();
                self.plugin = plugin_name(&p);
                self.proc = AuthProc::init(&p)
                    .map_err(|_| WireError::UnsupportedPlugin(self.plugin.clone()))?;
                let mut data = sw.plugin_data().to_vec();
                if matches!(p, AuthPlugin::Ed25519) && data.len() == 33 && data[32] == 0 {
                    data.pop();
                }
                self.scramble = data.clone();
                Ok(match self.run(data)? {
                    Some(r) => AuthStep::Reply(r),
                    None => AuthStep::Wait,
                })
            }
            Some(0x01) => Ok(match self.run(payload[1..].to_vec())? {
                Some(r) => AuthStep::Reply(r),
                None => AuthStep::Wait,
            }),
            _ => Err(WireError::Protocol(format!(
                "unexpected packet during auth (first byte {:?})",
                payload.first()
            ))),
        }
    }
}

/// Error code and message of an ERR payload (SQL state dropped).
pub fn parse_err(p: &[u8]) -> (u16, String) {
    let code = match p {
        [_, a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    };
    let mut msg = p.get(3..).unwrap_or_default();
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    (code, String::from_utf8_lossy(msg).into_owned())
}

fn put_lenenc(out: &mut Vec<u8>, n: usize) {
    let n = n as u64;
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 1 << 24 {
        out.push(0xfd);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xfe);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc(out, s.len());
    out.extend_from_slice(s);
}

fn put_attrs(out: &mut Vec<u8>, attrs: &[(String, String)]) {
    let mut body = Vec::new();
    for (k, v) in attrs {
        put_lenenc_str(&mut body, k.as_bytes());
        put_lenenc_str(&mut body, v.as_bytes());
    }
    put_lenenc_str(out, &body);
}

fn put_auth_data(out: &mut Vec<u8>, caps: u32, data: &[u8]) {
    if caps & PLUGIN_AUTH_LENENC != 0 {
        put_lenenc_str(out, data);
    } else if caps & SECURE_CONNECTION != 0 {
        out.push(data.len().min(255) as u8);
        out.extend_from_slice(&data[..data.len().min(255)]);
    } else {
        out.extend_from_slice(data);
        out.push(0);
    }
}

/// The 32-byte fixed head of HandshakeResponse41 (alone, it is the SSLRequest).
fn response_head(caps: u32, ext: u32, max_packet: u32, collation: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&caps.to_le_bytes());
    out.extend_from_slice(&max_packet.to_le_bytes());
    out.push(collation);
    out.extend_from_slice(&[0; 19]);
    out.extend_from_slice(&ext.to_le_bytes());
    out
}

/// HandshakeResponse41.
#[allow(clippy::too_many_arguments)]
pub fn handshake_response(
    caps: u32,
    ext: u32,
    max_packet: u32,
    collation: u8,
    user: &str,
    auth: &[u8],
    db: Option<&str>,
    plugin: &str,
    attrs: &[(String, String)],
) -> Vec<u8> {
    let mut out = response_head(caps, ext, max_packet, collation);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    put_auth_data(&mut out, caps, auth);
    if caps & CONNECT_WITH_DB != 0 {
        out.extend_from_slice(db.unwrap_or_default().as_bytes());
        out.push(0);
    }
    if caps & PLUGIN_AUTH != 0 {
        out.extend_from_slice(plugin.as_bytes());
        out.push(0);
    }
    if caps & CONNECT_ATTRS != 0 {
        put_attrs(&mut out, attrs);
    }
    out
}

/// COM_CHANGE_USER payload and the exchange that follows it (answered with the greeting's
/// scramble and the server's default plugin, as libmysqlclient does).
#[allow(clippy::too_many_arguments)]
pub fn change_user(
    server: &ServerInfo,
    caps: u32,
    collation: u16,
    user: &str,
    password: &str,
    db: Option<&str>,
    attrs: &[(String, String)],
    tls: bool,
) -> Result<(Vec<u8>, AuthExchange), WireError> {
    let plugin = initial_plugin(&server.plugin);
    let (x, auth) = AuthExchange::start(plugin.as_bytes(), &server.scramble, password, tls)?;
    let mut out = vec![super::com::CHANGE_USER];
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    if caps & SECURE_CONNECTION != 0 {
        out.push(auth.len().min(255) as u8);
        out.extend_from_slice(&auth[..auth.len().min(255)]);
    } else {
        out.extend_from_slice(&auth);
        out.push(0);
    }
    out.extend_from_slice(db.unwrap_or_default().as_bytes());
    out.push(0);
    out.extend_from_slice(&collation.to_le_bytes());
    if caps & PLUGIN_AUTH != 0 {
        out.extend_from_slice(plugin.as_bytes());
        out.push(0);
    }
    if caps & CONNECT_ATTRS != 0 {
        put_attrs(&mut out, attrs);
    }
    Ok((out, x))
}

/// The plugin of the first answer: the server's default when its challenge is the 20-byte
/// greeting scramble, else mysql_native_password (the server then switches).
fn initial_plugin(server_plugin: &str) -> &str {
    match server_plugin {
        "caching_sha2_password" | "sha256_password" => server_plugin,
        _ => "mysql_native_password",
    }
}

/// What the executor does next during the handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Frame `payload` with sequence id `seq`, send it, read the next packet.
    Send {
        /// Sequence id.
        seq: u8,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Send the SSLRequest `payload` with `seq`, run the TLS handshake, then call
    /// [`Handshake::on_tls_ready`].
    StartTls {
        /// Sequence id.
        seq: u8,
        /// SSLRequest payload.
        payload: Vec<u8>,
    },
    /// Read the next packet.
    Wait,
    /// Logged in; turn compression on if [`Handshake::compressed`].
    Done,
}

#[derive(Debug)]
enum HsState {
    Greeting,
    Tls { seq: u8 },
    Auth,
    Done,
}

/// The connect-time state machine.
#[derive(Debug)]
pub struct Handshake {
    params: ConnectParams,
    tls_available: bool,
    state: HsState,
    server: ServerInfo,
    caps: u32,
    ext: u32,
    tls: bool,
    auth: Option<AuthExchange>,
}

impl Handshake {
    /// A handshake; `tls_available` says whether the executor can run TLS.
    pub fn new(params: ConnectParams, tls_available: bool) -> Self {
        Self {
            params,
            tls_available,
            state: HsState::Greeting,
            server: ServerInfo::default(),
            caps: 0,
            ext: 0,
            tls: false,
            auth: None,
        }
    }

    /// The greeting's facts (after the first packet).
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// Negotiated (capabilities, MariaDB extended capabilities).
    pub fn negotiated(&self) -> (u32, u32) {
        (self.caps, self.ext)
    }

    /// Compression was negotiated (on after [`Step::Done`]).
    pub fn compressed(&self) -> bool {
        self.caps & COMPRESS != 0
    }

    /// The plugin the login ended with.
    pub fn plugin(&self) -> Option<&str> {
        self.auth.as_ref().map(AuthExchange::plugin)
    }

    /// Feed one server packet.
    pub fn on_packet(&mut self, seq: u8, payload: &[u8]) -> Result<Step, WireError> {
        match self.state {
            HsState::Greeting => self.on_greeting(payload),
            HsState::Auth => {
                let Some(x) = self.auth.as_mut() else {
                    return Err(WireError::Protocol("auth state lost".into()));
                };
                match x.on_packet(payload)? {
                    AuthStep::Reply(p) => Ok(Step::Send {
                        seq: seq.wrapping_add(1),
                        payload: p,
                    }),
                    AuthStep::Wait => Ok(Step::Wait),
                    AuthStep::Ok => {
                        self.state = HsState::Done;
                        Ok(Step::Done)
                    }
                }
            }
            HsState::Tls { .. } | HsState::Done => Err(WireError::Protocol(
                "packet after the handshake ended".into(),
            )),
        }
    }

    fn on_greeting(&mut self, payload: &[u8]) -> Result<Step, WireError> {
        if payload.first() == Some(&0xff) {
            let (code, message) = parse_err(payload);
            return Err(WireError::Auth { code, message });
        }
        if payload.first() != Some(&10) {
            return Err(WireError::Protocol(format!(
                "greeting protocol {:?}, want 10",
                payload.first()
            )));
        }
        let hs: HandshakePacket<'_> = ParseBuf(payload)
            .parse(())
            .map_err(|e| WireError::Protocol(format!("greeting: {e}")))?;
        self.server = ServerInfo {
            version: hs.server_version_str().into_owned(),
            connection_id: hs.connection_id(),
            capabilities: hs.capabilities().bits(),
            mariadb_capabilities: hs.mariadb_ext_capabilities().bits(),
            collation: hs.default_collation(),
            scramble: hs.nonce(),
            plugin: hs
                .auth_plugin_name_str()
                .map(|s| s.trim_end_matches('\0').to_owned())
                .unwrap_or_else(|| "mysql_native_password".into()),
        };
        let server_tls = self.server.capabilities & SSL != 0;
        let tls = match self.params.ssl_mode {
            SslMode::Disabled => false,
            SslMode::Preferred => server_tls && self.tls_available,
            m if !self.tls_available && m.requires_tls() => {
                return Err(WireError::TlsUnavailable("not built into this client"))
            }
            m if !server_tls && m.requires_tls() => {
                return Err(WireError::TlsUnavailable("the server does not offer TLS"))
            }
            SslMode::Required | SslMode::VerifyCa | SslMode::VerifyIdentity => true,
        };
        let (caps, ext) = negotiate(
            &self.params,
            self.server.capabilities,
            self.server.mariadb_capabilities,
            tls,
        );
        self.caps = caps;
        self.ext = ext;
        self.tls = tls;
        if tls {
            self.state = HsState::Tls { seq: 2 };
            return Ok(Step::StartTls {
                seq: 1,
                payload: response_head(caps, ext, self.params.max_packet, self.collation()),
            });
        }
        self.respond(1)
    }

    fn collation(&self) -> u8 {
        u8::try_from(self.params.collation).unwrap_or(self.server.collation)
    }

    fn respond(&mut self, seq: u8) -> Result<Step, WireError> {
        let plugin = initial_plugin(&self.server.plugin).to_owned();
        let (x, auth) = AuthExchange::start(
            plugin.as_bytes(),
            &self.server.scramble,
            &self.params.password,
            self.tls,
        )?;
        self.auth = Some(x);
        self.state = HsState::Auth;
        let p = &self.params;
        Ok(Step::Send {
            seq,
            payload: handshake_response(
                self.caps,
                self.ext,
                p.max_packet,
                self.collation(),
                &p.user,
                &auth,
                p.db.as_deref(),
                &plugin,
                &p.attributes,
            ),
        })
    }

    /// The TLS handshake finished: send the HandshakeResponse.
    pub fn on_tls_ready(&mut self) -> Result<Step, WireError> {
        match self.state {
            HsState::Tls { seq } => self.respond(seq),
            _ => Err(WireError::Protocol(
                "TLS ready outside the handshake".into(),
            )),
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
