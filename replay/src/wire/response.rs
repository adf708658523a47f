//! The connection's side of the one response state machine,
//! [`mrte_capture::mysql::response::ResponseReader`] (shared with the capture decoder): fed the
//! packets of one command's response, it says when the response is complete, and the outcome is
//! summed up in a [`Reply`]. Rows are counted and hashed exactly as the capture hashes prod's
//! (ordered, order-insensitive, column definitions without schema names), never decoded.
//!
//! This adapter adds what the wire connection needs around it: commands with no response, byte
//! and packet counts, and a typed error when the response cannot be read.

use mrte_capture::event::{PrepareOk, Response, ResponseStatus, ResultChecksum};
use mrte_capture::mysql::response::{self as shared, Step};

use super::WireError;

pub use shared::Expect;

/// Row hashes of a response (over the raw row packets of every result set, in order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RowHash {
    /// Changes when any row or the row order changes.
    pub ordered: u64,
    /// Changes when any row changes; not when rows are reordered.
    pub unordered: u64,
}

/// One command's response, summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Ok, Err, or None (no response expected).
    pub status: ResponseStatus,
    /// Error code and message on Err.
    pub error: Option<(u16, String)>,
    /// Rows over all result sets.
    pub rows: u64,
    /// Affected rows (summed over OK packets).
    pub affected: u64,
    /// Last insert id of the last OK packet.
    pub last_insert_id: u64,
    /// Warnings of the last OK / EOF.
    pub warnings: u16,
    /// Server status of the last OK / EOF.
    pub server_status: u16,
    /// Result sets.
    pub result_sets: u32,
    /// Columns of the first result set (FIELD_LIST: definitions; PREPARE: result columns).
    pub columns: u32,
    /// Row hashes.
    pub hash: RowHash,
    /// Hash of the column definitions without schema names.
    pub meta_hash: u64,
    /// The checksum as the capture records it (when there were result sets).
    pub checksum: Option<ResultChecksum>,
    /// PREPARE_OK.
    pub prepare: Option<PrepareOk>,
    /// File name of a LOCAL INFILE request.
    pub local_infile: Option<Vec<u8>>,
    /// COM_STATISTICS text.
    pub text: Option<String>,
    /// A protocol oddity the reader went past.
    pub anomaly: Option<&'static str>,
    /// Packets read.
    pub packets: u32,
    /// Payload bytes read.
    pub bytes: u64,
    /// Send → last packet, microseconds (set by the connection).
    pub latency_us: u64,
}

impl Reply {
    /// From the shared reader's [`Response`].
    pub fn from_response(r: Response) -> Self {
        let sum = r.checksum.unwrap_or_default();
        Self {
            status: r.status,
            error: r
                .error_code
                .map(|c| (c, r.error_message.clone().unwrap_or_default())),
            rows: r.rows,
            affected: r.affected,
            last_insert_id: r.last_insert_id,
            warnings: r.warnings,
            server_status: r.server_status,
            result_sets: r.result_sets,
            columns: r.columns,
            hash: RowHash {
                ordered: sum.rows_ordered,
                unordered: sum.rows_unordered,
            },
            meta_hash: sum.columns,
            checksum: r.checksum,
            prepare: r.prepare_ok,
            local_infile: r.infile_name.map(String::into_bytes),
            text: r.statistics,
            ..Self::default()
        }
    }

    /// As the engine's [`crate::TestResponse`].
    pub fn to_test_response(&self) -> crate::TestResponse {
        crate::TestResponse {
            status: self.status,
            error_code: self.error.as_ref().map(|e| e.0),
            error_message: self.error.as_ref().map(|e| e.1.clone()),
            rows: self.rows,
            affected: self.affected,
            result_sets: self.result_sets,
            checksum: self.checksum,
            latency_us: self.latency_us,
        }
    }
}

/// What the reader wants after a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Feed the next packet.
    More,
    /// The response is complete.
    Done,
    /// The server asks for a LOCAL INFILE file: send its bytes and an empty packet, tell
    /// [`ResponseReader::client_packet`] the last sequence id sent, then go on feeding.
    LocalInfile,
}

/// The response reader of one command.
#[derive(Debug)]
pub struct ResponseReader {
    inner: Option<shared::ResponseReader>,
    anomaly: Option<&'static str>,
    packets: u32,
    bytes: u64,
}

impl ResponseReader {
    /// A reader for the response to `payload` (command byte first), sent under negotiated
    /// capabilities `caps`, its last packet having sequence id `last_seq`.
    pub fn for_command(payload: &[u8], caps: u32, last_seq: u8) -> Self {
        let inner = payload
            .first()
            .and_then(|&c| Expect::for_command(c))
            .map(|e| shared::ResponseReader::new(e, caps, last_seq));
        Self {
            inner,
            anomaly: None,
            packets: 0,
            bytes: 0,
        }
    }

    /// The response is complete (at once for commands without one).
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Some(r) => r.is_done(),
            None => true,
        }
    }

    /// Feed one whole packet.
    pub fn feed(&mut self, seq: u8, payload: &[u8]) -> Result<Feed, WireError> {
        let Some(r) = self.inner.as_mut() else {
            return Err(WireError::Protocol(
                "a packet for a command without response".into(),
            ));
        };
        self.packets += 1;
        self.bytes += payload.len() as u64;
        let step = r.feed(seq, payload, payload.len());
        if r.has_anomaly() {
            let a = r.take_anomaly();
            self.anomaly = self.anomaly.or(a);
            if r.is_broken() {
                return Err(WireError::Protocol(
                    a.unwrap_or("unreadable response").into(),
                ));
            }
        }
        Ok(match step {
            Step::NeedMore => Feed::More,
            Step::Done => Feed::Done,
            Step::LocalInfile => Feed::LocalInfile,
        })
    }

    /// The client sent a packet inside the exchange (LOCAL INFILE data) with sequence id `seq`.
    pub fn client_packet(&mut self, seq: u8) {
        if let Some(r) = self.inner.as_mut() {
            r.client_packet(seq);
        }
    }

    /// The summary.
    pub fn into_reply(self) -> Reply {
        let mut reply = match self.inner {
            Some(r) => Reply::from_response(r.into_response()),
            None => Reply::default(),
        };
        reply.anomaly = self.anomaly;
        reply.packets = self.packets;
        reply.bytes = self.bytes;
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(schema: &str, name: &str) -> Vec<u8> {
        let mut d = Vec::new();
        for s in ["def", schema, "t", "t", name, name] {
            d.push(s.len() as u8);
            d.extend_from_slice(s.as_bytes());
        }
        d.extend_from_slice(&[0x0c, 0x21, 0, 0x0b, 0, 0, 0, 0x03, 0, 0, 0, 0, 0]);
        d
    }

    fn run(schema: &str, rows: &[&[u8]]) -> Reply {
        let eof = [0xfe, 0, 0, 2, 0];
        let mut r = ResponseReader::for_command(b"\x03SELECT", 0, 0);
        let mut pkts = vec![vec![1], def(schema, "c"), eof.to_vec()];
        pkts.extend(rows.iter().map(|r| r.to_vec()));
        pkts.push(eof.to_vec());
        for (i, p) in pkts.iter().enumerate() {
            let f = r.feed(i as u8 + 1, p).unwrap();
            assert_eq!(f == Feed::Done, i + 1 == pkts.len());
        }
        r.into_reply()
    }

    #[test]
    fn result_set_through_the_shared_reader() {
        let a = run("prod", &[b"\x01a", b"\x01b"]);
        assert_eq!((a.status, a.rows, a.packets), (ResponseStatus::Ok, 2, 6));
        assert!(a.checksum.is_some());
        let b = run("test", &[b"\x01a", b"\x01b"]);
        assert_eq!((a.hash, a.meta_hash), (b.hash, b.meta_hash));
        let c = run("prod", &[b"\x01b", b"\x01a"]);
        assert_ne!(c.hash.ordered, a.hash.ordered);
        assert_eq!(c.hash.unordered, a.hash.unordered);
    }

    #[test]
    fn no_response_commands_and_errors() {
        let r = ResponseReader::for_command(&[0x19, 1, 0, 0, 0], 0, 0);
        assert!(r.is_done());
        assert_eq!(r.into_reply().status, ResponseStatus::None);
        let mut r = ResponseReader::for_command(&[0x0e], 0, 0);
        assert_eq!(r.feed(1, b"\xff\x15\x04#28000denied").unwrap(), Feed::Done);
        assert_eq!(r.into_reply().error, Some((1045, "denied".into())));
        // An empty packet: an error or an anomaly, never a panic.
        let mut r = ResponseReader::for_command(&[0x0e], 0, 0);
        let _ = r.feed(1, &[]);
    }
}
