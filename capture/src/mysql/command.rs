//! Client command payloads (`COM_*`): checked parsing of one whole command packet payload into
//! [`crate::event::Command`], and the per-connection prepared-statement table that binary
//! parameter decoding needs. Does not do framing, compression or response pairing.

use std::collections::HashMap;

use crate::event::Command;

/// Why a command payload could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Empty payload.
    #[error("empty command packet")]
    Empty,
    /// Payload shorter than its fixed fields.
    #[error("{0} payload truncated")]
    Truncated(&'static str),
    /// A field holds an impossible value.
    #[error("{0}: invalid field")]
    Invalid(&'static str),
}

/// What the decoder remembers about one prepared statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StmtInfo {
    /// Parameter count from COM_STMT_PREPARE_OK (None: statement prepared before capture).
    pub num_params: Option<u16>,
    /// Parameter types (type, unsigned) of the last execute that sent them.
    pub param_types: Vec<(u8, bool)>,
    /// The PREPARE text, if seen.
    pub sql: Option<Box<[u8]>>,
}

/// Prepared statements of one connection, by server-assigned id.
#[derive(Clone, Debug, Default)]
pub struct StmtTable {
    stmts: HashMap<u32, StmtInfo>,
}

impl StmtTable {
    /// Remember a statement from its PREPARE text and PREPARE_OK.
    pub fn on_prepare_ok(&mut self, stmt_id: u32, num_params: u16, sql: Option<Box<[u8]>>) {
        self.stmts.insert(
            stmt_id,
            StmtInfo {
                num_params: Some(num_params),
                param_types: Vec::new(),
                sql,
            },
        );
    }

    /// Forget a closed statement.
    pub fn on_close(&mut self, stmt_id: u32) {
        self.stmts.remove(&stmt_id);
    }

    /// Forget everything (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn clear(&mut self) {
        self.stmts.clear();
    }

    /// Look a statement up.
    pub fn get(&self, stmt_id: u32) -> Option<&StmtInfo> {
        self.stmts.get(&stmt_id)
    }
}

/// Parse one whole command payload (first byte = command) under capability flags `caps`.
pub fn parse_command(
    payload: &[u8],
    caps: u32,
    stmts: &mut StmtTable,
) -> Result<Command, CommandError> {
    let _ = (caps, stmts);
    let (&code, _rest) = payload.split_first().ok_or(CommandError::Empty)?;
    Ok(Command::Unknown {
        code,
        len: payload.len(),
    })
}
