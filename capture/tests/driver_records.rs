//! Records decoded from the recorded driver fixtures (tests/fixtures): raw payloads as sent,
//! LOCAL INFILE bytes, pipelined batches paired in order, result checksums, STATISTICS text.

use std::path::PathBuf;

use mrte_capture::event::{Command, CommandRecord, ResponseStatus, SessionEvent, SessionId};
use mrte_capture::pipeline::{Pipeline, PipelineConfig};
use mrte_capture::source::pcap::run_file;

fn records(name: &str) -> Vec<CommandRecord> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut sink: Vec<(SessionId, SessionEvent)> = Vec::new();
    run_file(&path, &mut p, &mut sink).unwrap();
    assert_eq!(p.stats().decode_errors, 0, "{name}");
    assert_eq!(p.stats().unknown_commands, 0, "{name}");
    sink.into_iter()
        .filter_map(|(_, e)| match e {
            SessionEvent::Command(c) => Some(*c),
            _ => None,
        })
        .collect()
}

#[test]
fn raw_payloads_are_the_commands_as_sent() {
    for name in [
        "connectorj.pcap",
        "connectorj_b.pcap",
        "mysql2.pcap",
        "pymysql.pcap",
        "mysqlconnector.pcap",
        "local_infile.pcap",
        "compressed.pcap",
    ] {
        let recs = records(name);
        assert!(!recs.is_empty(), "{name}");
        for r in &recs {
            assert_eq!(r.raw.first(), Some(&r.command.code()), "{name}: {r:?}");
            assert!(!r.flags.response_incomplete, "{name}: {r:?}");
            if let Command::Query { sql, attributes } = &r.command {
                if attributes.is_empty() {
                    assert!(r.raw.ends_with(sql), "{name}");
                }
            }
        }
    }
}

#[test]
fn pipelined_connector_j_batches_pair_every_response() {
    let recs = records("connectorj.pcap");
    let exec: Vec<_> = recs
        .iter()
        .filter(|r| matches!(r.command, Command::StmtExecute { .. }))
        .collect();
    assert_eq!(exec.len(), 131);
    for r in &exec {
        assert_eq!(r.response.status, ResponseStatus::Ok, "{r:?}");
        let Command::StmtExecute { params_unknown, .. } = r.command else {
            unreachable!()
        };
        assert!(!params_unknown);
    }
    let long = recs
        .iter()
        .filter(|r| matches!(r.command, Command::StmtSendLongData { .. }))
        .count();
    assert_eq!(long, 70);
}

#[test]
fn local_infile_bytes_statistics_and_checksums() {
    let recs = records("local_infile.pcap");
    let load: Vec<_> = recs.iter().filter(|r| r.response.local_infile).collect();
    assert!(!load.is_empty());
    for r in load {
        assert!(r.response.infile_name.is_some());
        assert!(r.infile.as_ref().is_some_and(|b| !b.is_empty()), "{r:?}");
    }
    let recs = records("mysqlconnector.pcap");
    let stats: Vec<_> = recs
        .iter()
        .filter(|r| r.command == Command::Statistics)
        .collect();
    assert_eq!(stats.len(), 2);
    assert!(stats.iter().all(|r| r
        .response
        .statistics
        .as_deref()
        .is_some_and(|s| s.contains("Uptime"))));
    let with_rows = recs.iter().filter(|r| r.response.rows > 0).count();
    let summed = recs
        .iter()
        .filter(|r| r.response.rows > 0 && r.response.checksum.is_some())
        .count();
    assert!(with_rows > 0);
    assert_eq!(with_rows, summed);
}
