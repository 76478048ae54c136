//! Binlog event types: every type code rowstream knows, its name for error
//! messages, and the layout of the common event header.
//!
//! Invariants: this is the only place a raw event type number appears; a
//! code is named here once (MySQL codes below 160, MariaDB's from 160), and
//! `event_name` gives the same name the constant has (the three pre-GA rows
//! codes share "PRE_GA_ROWS", the name the stream always reported).

/// Length of the common header in front of every event (v4 binlog).
pub const HEADER_LEN: usize = 19;
/// Header flag: the server made the event up (not read from a binlog file).
pub const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
/// Header flag: a replica that does not know the event may skip it.
pub const LOG_EVENT_IGNORABLE_F: u16 = 0x80;
/// Header flag (low byte): the binlog was open when the event was written.
pub const LOG_EVENT_BINLOG_IN_USE_F: u8 = 0x01;

/// The little-endian u32 at `b[at..at + 4]`. Callers check the length first
/// (like slicing, an index past the end panics; it is never reached).
#[inline(always)]
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The little-endian u64 at `b[at..at + 8]`; the length is checked as for [`le_u32`].
#[inline(always)]
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from(le_u32(b, at)) | u64::from(le_u32(b, at + 4)) << 32
}

pub const START_EVENT_V3: u8 = 1;
pub const QUERY: u8 = 2;
pub const STOP: u8 = 3;
pub const ROTATE: u8 = 4;
pub const INTVAR: u8 = 5;
pub const LOAD: u8 = 6;
pub const SLAVE: u8 = 7;
pub const CREATE_FILE: u8 = 8;
pub const APPEND_BLOCK: u8 = 9;
pub const EXEC_LOAD: u8 = 10;
pub const DELETE_FILE: u8 = 11;
pub const NEW_LOAD: u8 = 12;
pub const RAND: u8 = 13;
pub const USER_VAR: u8 = 14;
pub const FORMAT_DESCRIPTION: u8 = 15;
pub const XID: u8 = 16;
pub const BEGIN_LOAD_QUERY: u8 = 17;
pub const EXECUTE_LOAD_QUERY: u8 = 18;
pub const TABLE_MAP: u8 = 19;
pub const PRE_GA_WRITE_ROWS: u8 = 20;
pub const PRE_GA_UPDATE_ROWS: u8 = 21;
pub const PRE_GA_DELETE_ROWS: u8 = 22;
pub const WRITE_ROWS_V1: u8 = 23;
pub const UPDATE_ROWS_V1: u8 = 24;
pub const DELETE_ROWS_V1: u8 = 25;
pub const INCIDENT: u8 = 26;
pub const HEARTBEAT: u8 = 27;
pub const IGNORABLE: u8 = 28;
pub const ROWS_QUERY: u8 = 29;
pub const WRITE_ROWS: u8 = 30;
pub const UPDATE_ROWS: u8 = 31;
pub const DELETE_ROWS: u8 = 32;
pub const GTID: u8 = 33;
pub const ANONYMOUS_GTID: u8 = 34;
pub const PREVIOUS_GTIDS: u8 = 35;
pub const TRANSACTION_CONTEXT: u8 = 36;
pub const VIEW_CHANGE: u8 = 37;
pub const XA_PREPARE: u8 = 38;
pub const PARTIAL_UPDATE_ROWS: u8 = 39;
pub const TRANSACTION_PAYLOAD: u8 = 40;
pub const HEARTBEAT_V2: u8 = 41;
pub const GTID_TAGGED: u8 = 42;
pub const ANNOTATE_ROWS: u8 = 160;
pub const BINLOG_CHECKPOINT: u8 = 161;
pub const MARIADB_GTID: u8 = 162;
pub const GTID_LIST: u8 = 163;
pub const START_ENCRYPTION: u8 = 164;
pub const QUERY_COMPRESSED: u8 = 165;
pub const WRITE_ROWS_COMPRESSED_V1: u8 = 166;
pub const UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
pub const DELETE_ROWS_COMPRESSED_V1: u8 = 168;
pub const WRITE_ROWS_COMPRESSED: u8 = 169;
pub const UPDATE_ROWS_COMPRESSED: u8 = 170;
pub const DELETE_ROWS_COMPRESSED: u8 = 171;

/// Human name of a binlog event type code, for error messages.
pub fn event_name(ty: u8) -> &'static str {
    match ty {
        START_EVENT_V3 => "START_EVENT_V3",
        QUERY => "QUERY",
        STOP => "STOP",
        ROTATE => "ROTATE",
        INTVAR => "INTVAR",
        LOAD => "LOAD",
        SLAVE => "SLAVE",
        CREATE_FILE => "CREATE_FILE",
        APPEND_BLOCK => "APPEND_BLOCK",
        EXEC_LOAD => "EXEC_LOAD",
        DELETE_FILE => "DELETE_FILE",
        NEW_LOAD => "NEW_LOAD",
        RAND => "RAND",
        USER_VAR => "USER_VAR",
        FORMAT_DESCRIPTION => "FORMAT_DESCRIPTION",
        XID => "XID",
        BEGIN_LOAD_QUERY => "BEGIN_LOAD_QUERY",
        EXECUTE_LOAD_QUERY => "EXECUTE_LOAD_QUERY",
        TABLE_MAP => "TABLE_MAP",
        PRE_GA_WRITE_ROWS..=PRE_GA_DELETE_ROWS => "PRE_GA_ROWS",
        WRITE_ROWS_V1 => "WRITE_ROWS_V1",
        UPDATE_ROWS_V1 => "UPDATE_ROWS_V1",
        DELETE_ROWS_V1 => "DELETE_ROWS_V1",
        INCIDENT => "INCIDENT",
        HEARTBEAT => "HEARTBEAT",
        IGNORABLE => "IGNORABLE",
        ROWS_QUERY => "ROWS_QUERY",
        WRITE_ROWS => "WRITE_ROWS",
        UPDATE_ROWS => "UPDATE_ROWS",
        DELETE_ROWS => "DELETE_ROWS",
        GTID => "GTID",
        ANONYMOUS_GTID => "ANONYMOUS_GTID",
        PREVIOUS_GTIDS => "PREVIOUS_GTIDS",
        TRANSACTION_CONTEXT => "TRANSACTION_CONTEXT",
        VIEW_CHANGE => "VIEW_CHANGE",
        XA_PREPARE => "XA_PREPARE",
        PARTIAL_UPDATE_ROWS => "PARTIAL_UPDATE_ROWS",
        TRANSACTION_PAYLOAD => "TRANSACTION_PAYLOAD",
        HEARTBEAT_V2 => "HEARTBEAT_V2",
        GTID_TAGGED => "GTID_TAGGED",
        ANNOTATE_ROWS => "ANNOTATE_ROWS",
        BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT",
        MARIADB_GTID => "MARIADB_GTID",
        GTID_LIST => "GTID_LIST",
        START_ENCRYPTION => "START_ENCRYPTION",
        QUERY_COMPRESSED => "QUERY_COMPRESSED",
        WRITE_ROWS_COMPRESSED_V1 => "WRITE_ROWS_COMPRESSED_V1",
        UPDATE_ROWS_COMPRESSED_V1 => "UPDATE_ROWS_COMPRESSED_V1",
        DELETE_ROWS_COMPRESSED_V1 => "DELETE_ROWS_COMPRESSED_V1",
        WRITE_ROWS_COMPRESSED => "WRITE_ROWS_COMPRESSED",
        UPDATE_ROWS_COMPRESSED => "UPDATE_ROWS_COMPRESSED",
        DELETE_ROWS_COMPRESSED => "DELETE_ROWS_COMPRESSED",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_codes() {
        assert_eq!(event_name(WRITE_ROWS), "WRITE_ROWS");
        assert_eq!(event_name(21), "PRE_GA_ROWS");
        assert_eq!(event_name(MARIADB_GTID), "MARIADB_GTID");
        assert_eq!(event_name(99), "unknown");
    }
}
