//! Sans-IO MySQL protocol decoder for one TCP connection, both directions.
//!
//! Fed in-order bytes per direction with the packet timestamp ([`Connection::handle_data`]), told
//! about holes ([`Connection::handle_gap`]) and the end ([`Connection::handle_close`]); yields
//! [`ConnEvent`]s from [`Connection::poll_event`]. It never touches sockets, clocks or threads.
//! It does not reassemble TCP (see [`crate::tcp`]) nor know about sessions tables or rings.

pub mod command;
pub mod value;

use crate::event::{CommandRecord, Login};

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (requests).
    ToServer,
    /// Server to client (responses).
    ToClient,
}

/// Decoder settings.
#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// Largest command payload kept whole; larger ones are counted as too large and skipped.
    pub max_command_bytes: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_command_bytes: 64 << 20,
        }
    }
}

/// Something the pipeline must count; never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Bytes that are not valid MySQL protocol in this state.
    DecodeError(&'static str),
    /// Lost bytes or framing loss made the decoder drop its position.
    Desync,
    /// The decoder found a reliable command boundary again after a gap or mid-stream start.
    Resync,
    /// A command over `max_command_bytes` was skipped.
    TooLarge,
    /// A command byte MySQL does not define.
    UnknownCommand(u8),
    /// The client sent an SSLRequest: the rest of the session is encrypted.
    Tls,
    /// CLIENT_COMPRESS was negotiated.
    Compressed,
}

/// What the decoder yields.
#[derive(Clone, Debug, PartialEq)]
pub enum ConnEvent {
    /// Handshake done (or inferred mid-stream).
    Login(Login),
    /// A command paired with its response.
    Command(Box<CommandRecord>),
    /// Something to count.
    Anomaly(Anomaly),
}

/// Decoder state for one connection.
#[derive(Debug)]
pub struct Connection {
    _cfg: DecoderConfig,
}

impl Connection {
    /// A decoder for a connection seen from its SYN (`midstream = false`) or joined mid-stream.
    pub fn new(cfg: DecoderConfig, midstream: bool) -> Self {
        let _ = midstream;
        Self { _cfg: cfg }
    }

    /// Feed in-order bytes of one direction, with the timestamp of the segment that carried them.
    pub fn handle_data(&mut self, dir: Direction, data: &[u8], ts_us: u64) {
        let _ = (dir, data, ts_us);
    }

    /// `lost` bytes of `dir` will never arrive; resynchronise at the next reliable boundary.
    pub fn handle_gap(&mut self, dir: Direction, lost: u64, ts_us: u64) {
        let _ = (dir, lost, ts_us);
    }

    /// The connection ended: flush a pending command (with whatever response was seen).
    pub fn handle_close(&mut self, ts_us: u64) {
        let _ = ts_us;
    }

    /// Next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        None
    }
}
