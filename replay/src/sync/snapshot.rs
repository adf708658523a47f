//! Did the replay start from a snapshot of prod taken where the capture began? Compares the
//! position scripts/snapshot.sh printed for its snapshot (`--snapshot-pos`) with prod's position
//! read when the capture started (over `--prod`).
//!
//! Positions: `binlog:FILE:POS` (SHOW MASTER STATUS) or `writes:N` (the sum of prod's global
//! write-statement counters, for servers without a binary log). Equal positions mean prod wrote
//! nothing between the snapshot and the capture's start, so test (restored from the snapshot)
//! and prod were in the same state when the first captured command ran. This module does not
//! take or restore snapshots (the script does).

use mysql_async::prelude::Queryable;

use super::SnapshotCheck;
use crate::target::TargetDsn;

/// The statement counters that move when a client writes (the same list as
/// scripts/snapshot.sh).
pub const WRITES_SQL: &str = "SELECT CAST(SUM(VARIABLE_VALUE) AS UNSIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN \
  ('COM_INSERT','COM_INSERT_SELECT','COM_UPDATE','COM_UPDATE_MULTI','COM_DELETE','COM_DELETE_MULTI',\
   'COM_REPLACE','COM_REPLACE_SELECT','COM_LOAD','COM_CREATE_TABLE','COM_ALTER_TABLE','COM_DROP_TABLE',\
   'COM_TRUNCATE','COM_RENAME_TABLE','COM_CREATE_DB','COM_DROP_DB','COM_CREATE_INDEX','COM_DROP_INDEX',\
   'COM_XA_COMMIT')";

/// Prod's current position, in the format of `like` (`binlog:...` or `writes:...`).
pub async fn prod_position(prod: &TargetDsn, like: &str) -> Result<String, String> {
    let mut c = crate::control::connect(prod, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| format!("--prod: {e}"))?;
    let pos = if like.starts_with("binlog:") {
        let row: Option<(String, u64)> = c
            .query_first("SHOW MASTER STATUS")
            .await
            .map_err(|e| format!("SHOW MASTER STATUS: {e}"))?;
        row.map(|(f, p)| format!("binlog:{f}:{p}"))
            .ok_or_else(|| "prod has no binary log".to_string())?
    } else {
        let n: Option<u64> = c
            .query_first(WRITES_SQL)
            .await
            .map_err(|e| format!("reading prod's write counters: {e}"))?;
        format!("writes:{}", n.unwrap_or(0))
    };
    let _ = c.disconnect().await;
    Ok(pos)
}

/// The check, from the snapshot's position and prod's position at capture start (or why it
/// could not be read).
pub fn check(snapshot_pos: &str, capture_start: Result<String, String>) -> SnapshotCheck {
    match capture_start {
        Ok(p) => SnapshotCheck {
            snapshot_pos: snapshot_pos.to_string(),
            matching: Some(p == snapshot_pos.trim()),
            capture_start_pos: Some(p),
            note: None,
        },
        Err(why) => SnapshotCheck {
            snapshot_pos: snapshot_pos.to_string(),
            capture_start_pos: None,
            matching: None,
            note: Some(why),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_positions_match_others_do_not_and_unknown_is_said() {
        assert_eq!(
            check("writes:12", Ok("writes:12".into())).matching,
            Some(true)
        );
        let c = check("binlog:b.000001:400", Ok("binlog:b.000001:977".into()));
        assert_eq!(c.matching, Some(false));
        let c = check("writes:3", Err("no --prod".into()));
        assert_eq!((c.matching, c.note.as_deref()), (None, Some("no --prod")));
    }
}
