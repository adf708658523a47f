//! Connection phase: the server greeting (HandshakeV10), HandshakeResponse41 / SSLRequest from
//! the client, auth switch and auth-more-data exchanges, ending in the OK or ERR that opens the
//! command phase. It does not decode commands or command responses.

use std::sync::Arc;

use super::consts::caps;
use super::response::parse_err;
use super::value::Reader;
use super::{lossy, Anomaly, ConnEvent, Packet, Phase, Proto};

/// Four little-endian bytes (callers pass exactly four).
fn mariadb_ext(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .enumerate()
        .fold(0, |a, (i, &x)| a | u32::from(x) << (8 * i))
}

impl Proto {
    /// The handshake's login, made on first use.
    fn login(&mut self) -> &mut crate::event::Login {
        let midstream = self.midstream;
        self.login
            .get_or_insert_with(|| Box::new(crate::event::Login::unknown(midstream)))
    }

    pub(super) fn on_greeting(&mut self, p: Packet<'_>) {
        let mut r = Reader::new(p.payload);
        match r.u8("greeting") {
            Ok(0x0a) => {}
            Ok(0xff) => {
                let (code, _, _) = parse_err(p.payload);
                self.login().error_code = code;
                return;
            }
            _ => {
                self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                    "not a MySQL greeting",
                )));
                return;
            }
        }
        self.phase = Phase::AwaitHandshakeResponse;
        self.login().server_version = Some(lossy(r.nul_str()));
        let Ok(conn_id) = r.u32("connection id") else {
            return;
        };
        self.login().connection_id = Some(conn_id);
        if r.take(9, "auth data 1").is_err() {
            return;
        }
        let lo = r.u16("caps").unwrap_or(0);
        let _charset = r.u8("charset");
        let _status = r.u16("status");
        let hi = r.u16("caps").unwrap_or(0);
        self.server_caps = u32::from(lo) | u32::from(hi) << 16;
        let _ = r.u8("auth len");
        // MariaDB: the last 4 of the 10 reserved bytes are its extended capabilities when the
        // server does not claim CLIENT_MYSQL (LONG_PASSWORD).
        if let Ok(reserved) = r.take(10, "reserved") {
            if self.server_caps & caps::LONG_PASSWORD == 0 {
                self.login().mariadb_capabilities = mariadb_ext(&reserved[6..]);
            }
        }
        let _ = r.take(13, "auth data 2");
        if r.remaining() > 0 {
            self.login().auth_plugin = Some(lossy(r.nul_str()));
        }
    }

    pub(super) fn on_handshake_response(&mut self, p: Packet<'_>, ts_us: u64) {
        let mut r = Reader::new(p.payload);
        let Ok(c) = r.u32("client caps") else {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "short handshake response",
            )));
            return;
        };
        if c & caps::PROTOCOL_41 == 0 {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "pre-4.1 handshake response",
            )));
            self.phase = Phase::Auth;
            return;
        }
        let negotiated = if self.server_caps != 0 {
            c & (self.server_caps | caps::SSL)
        } else {
            c
        };
        // The last 4 of the 23 filler bytes (SSLRequest too): MariaDB extended capabilities,
        // when the client does not claim CLIENT_MYSQL; negotiated with the greeting's (when it
        // was seen).
        let ext = match p.payload.get(28..32) {
            Some(b) if c & caps::LONG_PASSWORD == 0 => mariadb_ext(b),
            _ => 0,
        };
        let server_ext = self.login().mariadb_capabilities;
        self.login().mariadb_capabilities = if self.server_caps == 0 {
            ext
        } else {
            ext & server_ext
        };
        if p.len == 32 && c & caps::SSL != 0 {
            self.caps = negotiated;
            self.phase = Phase::Tls;
            self.login().tls = true;
            self.login().ts_us = ts_us;
            self.login().capabilities = negotiated;
            self.emit(ConnEvent::Anomaly(Anomaly::Tls));
            self.login_sent = true;
            let login = Box::new(self.login().clone());
            self.emit(ConnEvent::Login(login));
            return;
        }
        self.caps = negotiated;
        self.phase = Phase::Auth;
        let collation = r.take(4 + 1, "handshake response").map(|b| b[4]);
        if collation.is_err() || r.take(23, "handshake response").is_err() {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "short handshake response",
            )));
            return;
        }
        self.login().collation = collation.ok().filter(|&c| c != 0);
        let user = lossy(r.nul_str());
        let auth_ok = if c & caps::PLUGIN_AUTH_LENENC != 0 {
            r.lenenc_bytes("auth response").is_ok()
        } else if c & caps::SECURE_CONNECTION != 0 {
            r.u8("auth len")
                .and_then(|n| r.take(usize::from(n), "auth response"))
                .is_ok()
        } else {
            r.nul_str();
            true
        };
        if !auth_ok {
            self.emit(ConnEvent::Anomaly(Anomaly::DecodeError(
                "bad auth response",
            )));
        }
        if c & caps::CONNECT_WITH_DB != 0 {
            let db = r.nul_str();
            if !db.is_empty() {
                self.login().db = Some(lossy(db));
            }
        }
        if c & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
            self.login().auth_plugin = Some(lossy(r.nul_str()));
        }
        self.login().user = Some(user);
    }

    pub(super) fn on_auth_server(&mut self, p: Packet<'_>, ts_us: u64) {
        match p.payload.first() {
            Some(0x00) => {
                self.login().ok = true;
                self.finish_login(ts_us);
                if self.caps & caps::COMPRESS != 0 {
                    self.enable_compress = true;
                    self.compressed = true;
                    self.login().compressed = true;
                    self.emit(ConnEvent::Anomaly(Anomaly::Compressed));
                }
            }
            Some(0xff) => {
                let (code, _, _) = parse_err(p.payload);
                self.login().ok = false;
                self.login().error_code = code;
                self.finish_login(ts_us);
            }
            Some(0xfe) => {
                let mut r = Reader::new(&p.payload[1..]);
                if r.remaining() > 0 {
                    self.login().auth_plugin = Some(lossy(r.nul_str()));
                }
            }
            _ => {}
        }
    }

    pub(super) fn finish_login(&mut self, ts_us: u64) {
        self.phase = Phase::Command;
        self.login().ts_us = ts_us;
        self.login().capabilities = self.caps;
        self.user = self.login().user.as_deref().map(Arc::from);
        self.db = self.login().db.as_deref().map(Arc::from);
        self.identity_sent = false;
        self.login_sent = true;
        let login = Box::new(self.login().clone());
        self.emit(ConnEvent::Login(login));
    }
}
