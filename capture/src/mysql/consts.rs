//! Protocol constants, defined once for the whole workspace: command bytes with their manual and
//! processlist names, `CapabilityFlags` and `ServerStatus` bits. Nothing here decodes anything.

/// One client command byte and its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// The command byte.
    pub code: u8,
    /// The manual's name (`COM_QUERY`).
    pub name: &'static str,
    /// The processlist / pt-query-digest name (`administrator command: <name>`).
    pub admin_name: &'static str,
}

macro_rules! commands {
    ($($konst:ident = $code:literal, $name:literal, $admin:literal;)*) => {
        /// Command bytes (`COM_*` without the prefix).
        pub mod com {
            $(
                #[doc = $name]
                pub const $konst: u8 = $code;
            )*
        }

        /// Every command byte MySQL and MariaDB define, in byte order.
        pub const COMMANDS: &[CommandInfo] = &[
            $(CommandInfo { code: $code, name: $name, admin_name: $admin },)*
        ];
    };
}

commands! {
    SLEEP = 0x00, "COM_SLEEP", "Sleep";
    QUIT = 0x01, "COM_QUIT", "Quit";
    INIT_DB = 0x02, "COM_INIT_DB", "Init DB";
    QUERY = 0x03, "COM_QUERY", "Query";
    FIELD_LIST = 0x04, "COM_FIELD_LIST", "Field List";
    CREATE_DB = 0x05, "COM_CREATE_DB", "Create DB";
    DROP_DB = 0x06, "COM_DROP_DB", "Drop DB";
    REFRESH = 0x07, "COM_REFRESH", "Refresh";
    SHUTDOWN = 0x08, "COM_SHUTDOWN", "Shutdown";
    STATISTICS = 0x09, "COM_STATISTICS", "Statistics";
    PROCESS_INFO = 0x0a, "COM_PROCESS_INFO", "Processlist";
    CONNECT = 0x0b, "COM_CONNECT", "Connect";
    PROCESS_KILL = 0x0c, "COM_PROCESS_KILL", "Kill";
    DEBUG = 0x0d, "COM_DEBUG", "Debug";
    PING = 0x0e, "COM_PING", "Ping";
    TIME = 0x0f, "COM_TIME", "Time";
    DELAYED_INSERT = 0x10, "COM_DELAYED_INSERT", "Delayed insert";
    CHANGE_USER = 0x11, "COM_CHANGE_USER", "Change user";
    BINLOG_DUMP = 0x12, "COM_BINLOG_DUMP", "Binlog dump";
    TABLE_DUMP = 0x13, "COM_TABLE_DUMP", "Table dump";
    CONNECT_OUT = 0x14, "COM_CONNECT_OUT", "Connect out";
    REGISTER_SLAVE = 0x15, "COM_REGISTER_SLAVE", "Register slave";
    STMT_PREPARE = 0x16, "COM_STMT_PREPARE", "Prepare";
    STMT_EXECUTE = 0x17, "COM_STMT_EXECUTE", "Execute";
    STMT_SEND_LONG_DATA = 0x18, "COM_STMT_SEND_LONG_DATA", "Long data";
    STMT_CLOSE = 0x19, "COM_STMT_CLOSE", "Close stmt";
    STMT_RESET = 0x1a, "COM_STMT_RESET", "Reset stmt";
    SET_OPTION = 0x1b, "COM_SET_OPTION", "Set option";
    STMT_FETCH = 0x1c, "COM_STMT_FETCH", "Fetch";
    DAEMON = 0x1d, "COM_DAEMON", "Daemon";
    BINLOG_DUMP_GTID = 0x1e, "COM_BINLOG_DUMP_GTID", "Binlog dump GTID";
    RESET_CONNECTION = 0x1f, "COM_RESET_CONNECTION", "Reset connection";
    STMT_BULK_EXECUTE = 0xfa, "COM_STMT_BULK_EXECUTE", "Bulk execute";
}

/// The entry of a command byte, if MySQL or MariaDB defines it.
pub fn command_info(code: u8) -> Option<&'static CommandInfo> {
    match code {
        0x00..=0x1f => COMMANDS.get(usize::from(code)),
        com::STMT_BULK_EXECUTE => COMMANDS.last(),
        _ => None,
    }
}

/// Name of a command byte as the MySQL manual spells it (`COM_QUERY`, ...; `COM_UNKNOWN`).
pub fn command_name(code: u8) -> &'static str {
    command_info(code).map_or("COM_UNKNOWN", |c| c.name)
}

/// The name pt-query-digest gives a command without SQL (`administrator command: <name>`).
pub fn admin_command_name(code: u8) -> &'static str {
    command_info(code).map_or("Unknown", |c| c.admin_name)
}

/// Commands that never get a response from the server.
pub fn has_no_response(code: u8) -> bool {
    matches!(code, com::QUIT | com::STMT_SEND_LONG_DATA | com::STMT_CLOSE)
}

/// `CapabilityFlags` bits (`CLIENT_*` without the prefix; MariaDB's extended bits live in the
/// upper 32 bits of its 64-bit flags and are not listed).
pub mod caps {
    /// CLIENT_LONG_PASSWORD.
    pub const LONG_PASSWORD: u32 = 1;
    /// CLIENT_FOUND_ROWS.
    pub const FOUND_ROWS: u32 = 1 << 1;
    /// CLIENT_LONG_FLAG.
    pub const LONG_FLAG: u32 = 1 << 2;
    /// CLIENT_CONNECT_WITH_DB.
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    /// CLIENT_NO_SCHEMA.
    pub const NO_SCHEMA: u32 = 1 << 4;
    /// CLIENT_COMPRESS.
    pub const COMPRESS: u32 = 1 << 5;
    /// CLIENT_ODBC.
    pub const ODBC: u32 = 1 << 6;
    /// CLIENT_LOCAL_FILES.
    pub const LOCAL_FILES: u32 = 1 << 7;
    /// CLIENT_IGNORE_SPACE.
    pub const IGNORE_SPACE: u32 = 1 << 8;
    /// CLIENT_PROTOCOL_41.
    pub const PROTOCOL_41: u32 = 1 << 9;
    /// CLIENT_INTERACTIVE.
    pub const INTERACTIVE: u32 = 1 << 10;
    /// CLIENT_SSL.
    pub const SSL: u32 = 1 << 11;
    /// CLIENT_IGNORE_SIGPIPE.
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    /// CLIENT_TRANSACTIONS.
    pub const TRANSACTIONS: u32 = 1 << 13;
    /// CLIENT_RESERVED.
    pub const RESERVED: u32 = 1 << 14;
    /// CLIENT_SECURE_CONNECTION (CLIENT_RESERVED2).
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
    /// CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS.
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    /// CLIENT_SESSION_TRACK.
    pub const SESSION_TRACK: u32 = 1 << 23;
    /// CLIENT_DEPRECATE_EOF.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    /// CLIENT_OPTIONAL_RESULTSET_METADATA.
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    /// CLIENT_ZSTD_COMPRESSION_ALGORITHM.
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    /// CLIENT_QUERY_ATTRIBUTES.
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    /// CLIENT_MULTI_FACTOR_AUTHENTICATION.
    pub const MULTI_FACTOR_AUTHENTICATION: u32 = 1 << 28;
    /// CLIENT_PROGRESS_OBSOLETE (MariaDB's former CLIENT_PROGRESS).
    pub const PROGRESS_OBSOLETE: u32 = 1 << 29;
    /// CLIENT_SSL_VERIFY_SERVER_CERT.
    pub const SSL_VERIFY_SERVER_CERT: u32 = 1 << 30;
    /// CLIENT_REMEMBER_OPTIONS.
    pub const REMEMBER_OPTIONS: u32 = 1 << 31;

    /// MARIADB_CLIENT_PROGRESS (extended capabilities, the 4 bytes MariaDB puts in the handshake's
    /// filler when CLIENT_MYSQL, bit 0, is unset): progress reports as ERR 0xFFFF mid-command.
    pub const MARIADB_PROGRESS: u32 = 1;
    /// MARIADB_CLIENT_STMT_BULK_OPERATIONS: COM_STMT_BULK_EXECUTE.
    pub const MARIADB_STMT_BULK_OPERATIONS: u32 = 1 << 2;
    /// MARIADB_CLIENT_EXTENDED_METADATA: extended type info in column definitions.
    pub const MARIADB_EXTENDED_METADATA: u32 = 1 << 3;
    /// MARIADB_CLIENT_CACHE_METADATA: EXECUTE responses skip unchanged metadata.
    pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
}

/// `ServerStatus` bits of OK and EOF packets (`SERVER_*`).
pub mod status {
    /// SERVER_STATUS_IN_TRANS.
    pub const IN_TRANS: u16 = 0x0001;
    /// SERVER_STATUS_AUTOCOMMIT.
    pub const AUTOCOMMIT: u16 = 0x0002;
    /// SERVER_MORE_RESULTS_EXISTS.
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    /// SERVER_QUERY_NO_GOOD_INDEX_USED.
    pub const NO_GOOD_INDEX_USED: u16 = 0x0010;
    /// SERVER_QUERY_NO_INDEX_USED.
    pub const NO_INDEX_USED: u16 = 0x0020;
    /// SERVER_STATUS_CURSOR_EXISTS.
    pub const CURSOR_EXISTS: u16 = 0x0040;
    /// SERVER_STATUS_LAST_ROW_SENT.
    pub const LAST_ROW_SENT: u16 = 0x0080;
    /// SERVER_STATUS_DB_DROPPED.
    pub const DB_DROPPED: u16 = 0x0100;
    /// SERVER_STATUS_NO_BACKSLASH_ESCAPES.
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    /// SERVER_STATUS_METADATA_CHANGED.
    pub const METADATA_CHANGED: u16 = 0x0400;
    /// SERVER_QUERY_WAS_SLOW.
    pub const QUERY_WAS_SLOW: u16 = 0x0800;
    /// SERVER_PS_OUT_PARAMS.
    pub const PS_OUT_PARAMS: u16 = 0x1000;
    /// SERVER_STATUS_IN_TRANS_READONLY.
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    /// SERVER_SESSION_STATE_CHANGED.
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_byte_order_and_names_match() {
        for (i, c) in COMMANDS.iter().take(32).enumerate() {
            assert_eq!(usize::from(c.code), i);
        }
        assert_eq!(command_name(com::STMT_EXECUTE), "COM_STMT_EXECUTE");
        assert_eq!(command_name(0xfa), "COM_STMT_BULK_EXECUTE");
        assert_eq!(command_name(0x20), "COM_UNKNOWN");
        assert_eq!(admin_command_name(com::PING), "Ping");
        assert_eq!(admin_command_name(0xfb), "Unknown");
        assert!(has_no_response(com::STMT_CLOSE) && !has_no_response(com::STMT_RESET));
    }
}
