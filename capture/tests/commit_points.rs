//! Commit points on real captures (tests/fixtures, recorded by scripts/record-fixtures.sh):
//! sysbench oltp_read_write ran 40 transactions (each BEGIN, 14 reads, 2 UPDATEs, a DELETE, an
//! INSERT, COMMIT: 800 queries, no error), oltp_read_only 40 transactions that wrote nothing.

use std::path::Path;

use mrte_capture::commit::TrxEnd;
use mrte_capture::event::{CommandRecord, SessionEvent, SessionId};
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_capture::source::pcap::run_file;

fn records(fixture: &str) -> (Vec<(SessionId, CommandRecord)>, (u64, u64)) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(fixture);
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut ev: Vec<(SessionId, SessionEvent)> = Vec::new();
    run_file(&path, &mut p, &mut ev).expect("fixture reads");
    let counts = p.commit_counts();
    let recs = ev
        .into_iter()
        .filter_map(|(id, e)| match e {
            SessionEvent::Command(c) => Some((id, *c)),
            _ => None,
        })
        .collect();
    (recs, counts)
}

fn sql(r: &CommandRecord) -> String {
    String::from_utf8_lossy(r.command.sql().unwrap_or_default()).into_owned()
}

#[test]
fn sysbench_read_write_commits_are_numbered_in_prod_time_order() {
    let (recs, (commits, rollbacks)) = records("sysbench_text.pcap");
    assert_eq!((commits, rollbacks), (40, 0));
    let ends: Vec<&CommandRecord> = recs
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.commit.end.is_some())
        .collect();
    assert_eq!(ends.len(), 40);
    assert!(ends
        .iter()
        .all(|r| r.commit.end == Some(TrxEnd::Commit) && sql(r) == "COMMIT"));
    // Numbers 1..=40, in the order the COMMITs' responses ended on prod.
    let mut by_order: Vec<&CommandRecord> = ends.clone();
    by_order.sort_by_key(|r| r.commit.order);
    let orders: Vec<u64> = by_order.iter().map(|r| r.commit.order).collect();
    assert_eq!(orders, (1..=40).collect::<Vec<_>>());
    assert!(by_order
        .windows(2)
        .all(|w| w[0].response.last_byte_us <= w[1].response.last_byte_us));
    // Every command's watermark counts exactly the commits that ended before it was sent.
    let commit_times: Vec<u64> = by_order
        .iter()
        .map(|r| r.response.last_byte_us.unwrap())
        .collect();
    for (_, r) in &recs {
        let want = commit_times.iter().filter(|&&t| t < r.ts_us).count() as u64;
        assert_eq!(r.commit.before_request, want, "{}", sql(r));
        assert!(r.commit.before_response >= r.commit.before_request);
    }
    // Two sessions interleave: some command was sent after the other session's commit.
    let (a, _) = recs[0];
    assert!(recs
        .iter()
        .any(|(id, r)| *id != a && r.commit.before_request > 0 && r.commit.end.is_none()));
    // A COMMIT's own commit is never in its watermarks.
    assert!(ends
        .iter()
        .all(|r| r.commit.before_response < r.commit.order));
}

#[test]
fn sysbench_read_only_transactions_are_not_commit_points() {
    let (recs, (commits, rollbacks)) = records("sysbench_ps.pcap");
    assert_eq!((commits, rollbacks), (0, 0));
    let ro = recs
        .iter()
        .filter(|(_, r)| r.commit.end == Some(TrxEnd::ReadOnly))
        .count();
    assert_eq!(ro, 40);
    assert!(recs
        .iter()
        .all(|(_, r)| r.commit.order == 0 && r.commit.before_request == 0));
}
