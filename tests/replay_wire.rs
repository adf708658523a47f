//! `mrte replay --conn wire` of each driver capture (tests/fixtures: Connector/J x2, mysql2,
//! PyMySQL, mysql-connector-python) onto its schema as it was when the capture began, on a
//! throwaway MariaDB: every table ends with prod's row count and CHECKSUM TABLE (truth.json),
//! the books balance, nothing is skipped, lost or failed, and no compared result differs from
//! prod's. Skipped loudly when MariaDB is missing.

#[path = "../replay/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::MariaDb;
use mysql_async::prelude::Queryable;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn replay_fixture(name: &str) {
    let Some(db) = MariaDb::start(name) else {
        return;
    };
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("truth.json")).expect("truth.json"),
    )
    .expect("truth parses");
    let t = &truth[name];
    let schema = std::fs::read_to_string(fixtures().join(t["schema"].as_str().expect("schema")))
        .expect("schema file");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut a = common::admin(&db).await;
        a.query_drop(schema).await.expect("load schema");
        a.disconnect().await.expect("disconnect");
    });

    let report = db.dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["replay", "-q", "--conn", "wire", "--speed", "1", "-r"])
        .arg(fixtures().join(t["file"].as_str().expect("file")))
        .arg("--target")
        .arg(db.dsn(None))
        .arg("--report")
        .arg(&report)
        .env_remove("MRTE_TARGET_PASSWORD")
        .output()
        .expect("run mrte");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let results = &v["results"];
    assert!(
        results["compared"].as_u64().unwrap_or(0) > 0,
        "{name}: {results}"
    );
    let diverged: Vec<String> = v["fingerprints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["results"]["mismatch"].as_u64().unwrap_or(0) > 0)
        .map(|f| format!("{} {}", f["fingerprint"], f["result_samples"]))
        .collect();
    assert_eq!(results["mismatch"], 0, "{name}: {results}\n{diverged:#?}");
    // Column definitions as prod's (node mariadb negotiates EXTENDED_METADATA; the replay asks
    // for the same extended capabilities).
    assert_eq!(results["metadata_mismatch"], 0, "{name}: {results}");
    let books = &v["accounting"];
    assert_eq!(books["balanced"], true, "{name}: {books}");
    assert!(
        books["replayed"].as_u64().unwrap_or(0) > 0,
        "{name}: {books}"
    );
    assert_eq!(books["skipped"], 0, "{name}: {}", v["skipped"]);
    assert_eq!(books["failed"], 0, "{name}: {}", v["failed"]);
    assert_eq!(books["lost"], 0, "{name}: {books}\n{stdout}");

    rt.block_on(async {
        let mut a = common::admin(&db).await;
        for (table, want) in t["tables"].as_object().expect("tables") {
            let (_, sum): (String, Option<u64>) = a
                .query_first(format!("CHECKSUM TABLE {table}"))
                .await
                .expect("checksum")
                .expect("a row");
            let rows: u64 = a
                .query_first(format!("SELECT COUNT(*) FROM {table}"))
                .await
                .expect("count")
                .expect("a row");
            assert_eq!(rows, want["rows"].as_u64().unwrap(), "{name}: {table} rows");
            assert_eq!(sum, want["checksum"].as_u64(), "{name}: {table} checksum");
        }
        a.disconnect().await.expect("disconnect");
    });
}

#[test]
fn connectorj_replayed_by_the_binary_leaves_prods_tables() {
    replay_fixture("connectorj");
}

#[test]
fn connectorj_b_replayed_by_the_binary_leaves_prods_tables() {
    replay_fixture("connectorj_b");
}

#[test]
fn mysql2_replayed_by_the_binary_leaves_prods_tables() {
    replay_fixture("mysql2");
}

#[test]
fn pymysql_replayed_by_the_binary_leaves_prods_tables() {
    replay_fixture("pymysql");
}

#[test]
fn mysqlconnector_replayed_by_the_binary_leaves_prods_tables() {
    replay_fixture("mysqlconnector");
}

/// The second workloads (scripts/drivers/*_x: procedures, transactions, types, pools) and node
/// mariadb (pipelined, bulk batches) + mysqljs, PHP mysqlnd (cursor fetch), Go go-sql-driver.
#[test]
fn second_driver_workloads_replayed_leave_prods_tables() {
    for name in [
        "connectorj_x",
        "mysql2_x",
        "pymysql_x",
        "mysqlconnector_x",
        "mariadbjs",
    ] {
        replay_fixture(name);
    }
}
