//! `mrte inspect` on the broken captures of tests/fixtures/hostile (made from a real capture by
//! scripts/make-hostile.py): a clear error naming the byte offset and exit code 2, never a panic,
//! and the summary of everything before the damage still printed; unknown pcapng blocks skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

fn inspect(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrte"))
        .args(["inspect", "-f", "summary", "-r"])
        .arg(path)
        .output()
        .expect("run mrte")
}

/// What a summary says about the decode: sessions and commands.
fn decoded(stdout: &[u8]) -> Value {
    let s: Value = serde_json::from_slice(stdout).expect("summary JSON on stdout");
    serde_json::json!({"sessions": s["sessions"], "commands": s["commands"]})
}

fn commands(v: &Value) -> u64 {
    v["commands"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[test]
fn every_hostile_file_gives_a_clear_error_or_decodes() {
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json parses");
    let expected = expected.as_object().expect("object");
    let mut listed = 0;
    for e in std::fs::read_dir(dir()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name != "expected.json" {
            assert!(expected.contains_key(&name), "{name} not in expected.json");
            listed += 1;
        }
    }
    assert_eq!(listed, expected.len());

    let clean = inspect(&dir().join("pcapng_clean.pcapng"));
    assert!(clean.status.success());
    let clean = decoded(&clean.stdout);
    assert!(commands(&clean) >= 5, "{clean}");

    let mut kept_before_damage = 0;
    for (name, want) in expected {
        let path = dir().join(name);
        let out = inspect(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{name}: {err}");
        let code = out.status.code();
        assert_eq!(
            code,
            want["exit"].as_i64().map(|c| c as i32),
            "{name}: {err}"
        );
        if code == Some(0) {
            assert_eq!(decoded(&out.stdout), clean, "{name}");
            continue;
        }
        let offset = want["offset"].as_u64().unwrap();
        assert!(
            err.contains(&format!("at byte {offset}")),
            "{name}: offset {offset} not named: {err}"
        );
        let reason = want["reason"].as_str().unwrap();
        assert!(err.contains(reason), "{name}: no '{reason}' in: {err}");
        assert!(err.contains(name), "{name}: file not named: {err}");
        if let Some(n) = want["prefix"].as_u64() {
            // The intact start alone decodes to what the damaged file must still report.
            let data = std::fs::read(&path).unwrap();
            let tmp =
                std::env::temp_dir().join(format!("mrte-hostile-{}-{name}", std::process::id()));
            std::fs::write(&tmp, &data[..n as usize]).unwrap();
            let intact = inspect(&tmp);
            let _ = std::fs::remove_file(&tmp);
            assert!(intact.status.success(), "{name}: intact start fails");
            let before = decoded(&intact.stdout);
            assert_eq!(
                decoded(&out.stdout),
                before,
                "{name}: decode before the damage"
            );
            if commands(&before) > 0 {
                kept_before_damage += 1;
            }
        }
    }
    assert!(
        kept_before_damage >= 5,
        "only {kept_before_damage} files keep commands"
    );
}
