//! `--config FILE`: a small TOML-style file whose keys mirror the long flags of a subcommand.
//!
//! ```toml
//! # keys before any section apply to every subcommand; [run], [replay], ... to one
//! port = [3306, 3307]
//! [run]
//! iface = "span0"
//! target = "mysql://mrte@198.18.1.2:3306"
//! read-only = true
//! ```
//! The file's flags are placed before the command line's, so flags given on the command line win.
//! It does not read secrets from anywhere else; keep passwords in the environment.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Environment variable marking a process already restarted by [`hide_target_password`].
const REEXEC_MARK: &str = "MRTE_PASSWORD_MOVED";

/// A password in `--target mysql://user:PASSWORD@...` would show in `ps` for the whole run.
/// Without `unsafe` the arguments cannot be overwritten in place, so this re-executes the binary
/// once with the password removed from the DSN and given in `MRTE_TARGET_PASSWORD` (readable only
/// by the same user and root, like a password file). Returns only if nothing had to be done or the
/// re-exec failed (then with a warning).
pub fn hide_target_password(args: &[OsString]) {
    if std::env::var_os(REEXEC_MARK).is_some() {
        return;
    }
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    let mut password = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        let (value, joined) = if a == "--target" && i + 1 < args.len() {
            out.push(args[i].clone());
            i += 1;
            (args[i].to_string_lossy().into_owned(), false)
        } else if let Some(v) = a.strip_prefix("--target=") {
            (v.to_owned(), true)
        } else {
            out.push(args[i].clone());
            i += 1;
            continue;
        };
        match split_password(&value) {
            Some((dsn, pw)) => {
                password = Some(pw);
                out.push(if joined {
                    OsString::from(format!("--target={dsn}"))
                } else {
                    OsString::from(dsn)
                });
            }
            None => out.push(args[i].clone()),
        }
        i += 1;
    }
    let Some(pw) = password else {
        return;
    };
    eprintln!(
        "mrte: warning: a password in --target is visible to every user in `ps`; moving it to \
         the environment (use --target-password-file or MRTE_TARGET_PASSWORD instead)"
    );
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("mrte: warning: cannot re-execute myself: the password stays visible in `ps`");
        return;
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe)
        .arg0(
            out.first()
                .cloned()
                .unwrap_or_else(|| OsString::from("mrte")),
        )
        .args(out.iter().skip(1))
        .env("MRTE_TARGET_PASSWORD", pw)
        .env(REEXEC_MARK, "1")
        .exec();
    eprintln!("mrte: warning: re-exec failed ({err}): the password stays visible in `ps`");
}

/// `mysql://user:pw@rest` → (`mysql://user@rest`, decoded `pw`); `None` without a password.
fn split_password(dsn: &str) -> Option<(String, String)> {
    let rest = dsn.strip_prefix("mysql://")?;
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    let (user, _) = rest[..at].split_once(':')?;
    let parsed = mrte_replay::target::TargetDsn::parse_no_env(dsn).ok()?;
    Some((format!("mysql://{user}{}", &rest[at..]), parsed.password?))
}

/// Expand `--config FILE` (or `MRTE_CONFIG`) in `args` into the flags the file holds.
pub fn expand(mut args: Vec<OsString>) -> Result<Vec<OsString>> {
    let mut path: Option<OsString> = std::env::var_os("MRTE_CONFIG");
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if a == "--config" {
            if i + 1 >= args.len() {
                bail!("--config needs a file");
            }
            path = Some(args.remove(i + 1));
            args.remove(i);
            continue;
        }
        if let Some(p) = a.strip_prefix("--config=") {
            path = Some(OsString::from(p));
            args.remove(i);
            continue;
        }
        i += 1;
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let Some(sub_pos) = args
        .iter()
        .position(|a| matches!(a.to_str(), Some("inspect" | "record" | "run" | "replay")))
    else {
        return Ok(args);
    };
    let sub = args[sub_pos].to_string_lossy().into_owned();
    let text = std::fs::read_to_string(Path::new(&path))
        .with_context(|| format!("reading config {}", Path::new(&path).display()))?;
    let flags = parse(&text, &sub)?;
    let tail = args.split_off(sub_pos + 1);
    args.extend(flags.into_iter().map(OsString::from));
    args.extend(tail);
    Ok(args)
}

#[cfg(test)]
#[test]
fn dsn_password_is_split_out() {
    assert_eq!(
        split_password("mysql://app:s3cr%40t@10.0.0.1:3307/db"),
        Some(("mysql://app@10.0.0.1:3307/db".into(), "s3cr@t".into()))
    );
    assert_eq!(split_password("mysql://app@h/db"), None);
    assert_eq!(split_password("mysql://h"), None);
}

/// Flags for subcommand `sub` from config text.
pub fn parse(text: &str, sub: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("config line {}: expected `key = value`", n + 1);
        };
        if section.as_deref().is_some_and(|s| s != sub) {
            continue;
        }
        let key = k.trim().replace('_', "-");
        if key.is_empty() || key.starts_with('-') {
            bail!("config line {}: bad key", n + 1);
        }
        let v = v.trim();
        let values: Vec<String> =
            if let Some(inner) = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                inner
                    .split(',')
                    .map(|s| unquote(s.trim()))
                    .filter(|s| !s.is_empty())
                    .collect()
            } else {
                vec![unquote(v)]
            };
        for val in values {
            match val.as_str() {
                "true" => out.push(format!("--{key}")),
                "false" => {}
                _ => {
                    out.push(format!("--{key}"));
                    out.push(val);
                }
            }
        }
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_arrays_bools_and_comments() {
        let t = "port = [3306, 3307] # two\n[run]\niface = \"span0\"\nread_only = true\nsample = 50\n[replay]\nspeed = 2\n";
        assert_eq!(
            parse(t, "run").unwrap(),
            vec![
                "--port",
                "3306",
                "--port",
                "3307",
                "--iface",
                "span0",
                "--read-only",
                "--sample",
                "50"
            ]
        );
        assert_eq!(
            parse(t, "replay").unwrap(),
            vec!["--port", "3306", "--port", "3307", "--speed", "2"]
        );
        assert!(parse("nonsense", "run").is_err());
    }

    #[test]
    fn file_flags_go_before_command_line_flags() {
        let dir = std::env::temp_dir().join(format!("mrte-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "[inspect]\nformat = \"summary\"\n").unwrap();
        let args: Vec<OsString> = [
            "mrte",
            "inspect",
            "--config",
            f.to_str().unwrap(),
            "-r",
            "x.pcap",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got = expand(args).unwrap();
        let got: Vec<String> = got
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            vec!["mrte", "inspect", "--format", "summary", "-r", "x.pcap"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
