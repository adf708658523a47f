//! The wire connection against a throwaway MariaDB: logins (native, ed25519, wrong password),
//! raw commands byte for byte, pipelining, LOCAL INFILE, CHANGE_USER, compression, row hashes,
//! the prod client's MariaDB extended capabilities.

mod common;

use common::{admin, MariaDb};
use mrte_capture::event::ResponseStatus;
use mrte_replay::wire::caps::{COMPRESS, DEPRECATE_EOF, MULTI_STATEMENTS};
use mrte_replay::wire::{ConnectParams, Reply, SslMode, WireConn, WireError};
use mysql_async::prelude::Queryable;

fn addr(db: &MariaDb) -> String {
    format!("127.0.0.1:{}", db.port)
}

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    p
}

async fn q(c: &mut WireConn, sql: &str) -> Reply {
    let r = c.send_raw(&query(sql)).await.expect("send");
    assert_eq!(r.status, ResponseStatus::Ok, "{sql}: {:?}", r.error);
    r
}

async fn setup(db: &MariaDb) {
    let mut a = admin(db).await;
    for s in [
        "CREATE DATABASE app",
        "CREATE TABLE app.t (id INT PRIMARY KEY, c VARCHAR(20), k INT)",
        "INSERT INTO app.t VALUES (1,'one',10),(2,'two',20),(3,'three',30)",
        "CREATE TABLE app.t2 LIKE app.t",
        "INSERT INTO app.t2 SELECT * FROM app.t",
        "CREATE USER nat@'%' IDENTIFIED BY 'natpw'",
        "GRANT ALL ON app.* TO nat@'%'",
        "INSTALL SONAME 'auth_ed25519'",
        "CREATE USER ed@'%' IDENTIFIED VIA ed25519 USING PASSWORD('edpw')",
        "GRANT ALL ON app.* TO ed@'%'",
    ] {
        a.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    a.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn logins_native_ed25519_and_wrong_password() {
    let Some(db) = MariaDb::start("wire logins") else {
        return;
    };
    setup(&db).await;
    let mut c = WireConn::connect(&addr(&db), ConnectParams::new("nat", "natpw", Some("app")))
        .await
        .expect("native login");
    assert_eq!(c.plugin(), "mysql_native_password");
    assert_eq!(q(&mut c, "SELECT CURRENT_USER()").await.rows, 1);
    c.quit().await.expect("quit");

    let mut c = WireConn::connect(&addr(&db), ConnectParams::new("ed", "edpw", Some("app")))
        .await
        .expect("ed25519 login");
    assert_eq!(c.plugin(), "client_ed25519");
    let r = q(&mut c, "SELECT id FROM t").await;
    assert_eq!(r.rows, 3);

    for (user, pw) in [("nat", "bad"), ("ed", "bad"), ("nobody", "x")] {
        match WireConn::connect(&addr(&db), ConnectParams::new(user, pw, None)).await {
            Err(WireError::Auth { code, message }) => {
                assert_eq!(code, 1045, "{user}: {message}");
            }
            other => panic!("{user}: want one auth error, got {other:?}"),
        }
    }
}

fn execute(stmt: u32, k: i64) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&stmt.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&[0, 1, 8, 0]);
    p.extend_from_slice(&k.to_le_bytes());
    p
}

#[tokio::test]
async fn raw_commands_pipelining_infile_change_user() {
    let Some(db) = MariaDb::start("wire commands") else {
        return;
    };
    setup(&db).await;
    let mut p = ConnectParams::new("nat", "natpw", Some("app"));
    p.capabilities |= MULTI_STATEMENTS | DEPRECATE_EOF;
    let mut c = WireConn::connect(&addr(&db), p).await.expect("login");
    assert_ne!(c.capabilities().0 & DEPRECATE_EOF, 0);

    // Text query, multi-statements.
    let r = q(&mut c, "SELECT * FROM t ORDER BY id").await;
    assert_eq!((r.rows, r.columns, r.result_sets), (3, 3, 1));
    let r = q(
        &mut c,
        "SELECT 1; UPDATE t SET k = k WHERE id = 1; SELECT id FROM t",
    )
    .await;
    assert_eq!((r.rows, r.result_sets), (4, 2));
    let r = c
        .send_raw(&query("SELECT * FROM nope"))
        .await
        .expect("send");
    assert_eq!(r.status, ResponseStatus::Err);
    assert_eq!(r.error.as_ref().map(|e| e.0), Some(1146));

    // Prepare, execute (binary rows), close (no response), execute again → unknown statement.
    let r = c
        .send_raw(&query_cmd(0x16, "SELECT id, c FROM t WHERE k >= ?"))
        .await
        .expect("prepare");
    let pok = r.prepare.expect("PREPARE_OK");
    assert_eq!((pok.num_params, pok.num_columns), (1, 2));
    let r = c
        .send_raw(&execute(pok.stmt_id, 20))
        .await
        .expect("execute");
    assert_eq!((r.status, r.rows), (ResponseStatus::Ok, 2));
    let mut close = vec![0x19];
    close.extend_from_slice(&pok.stmt_id.to_le_bytes());
    assert_eq!(
        c.send_raw(&close).await.expect("close").status,
        ResponseStatus::None
    );
    let r = c
        .send_raw(&execute(pok.stmt_id, 20))
        .await
        .expect("execute");
    assert_eq!(r.error.map(|e| e.0), Some(1243));

    // Pipelined: three commands out before any response is read.
    c.send(&query("SELECT id FROM t")).await.expect("send");
    c.send(&[0x0e]).await.expect("ping");
    c.send(&query("SELECT id FROM t WHERE id = 2"))
        .await
        .expect("send");
    assert_eq!(c.outstanding(), 3);
    let rows: Vec<u64> = [
        c.read_response().await.expect("r1"),
        c.read_response().await.expect("r2"),
        c.read_response().await.expect("r3"),
    ]
    .iter()
    .map(|r| r.rows)
    .collect();
    assert_eq!(rows, [3, 0, 1]);

    // The other commands.
    let stats = c.send_raw(&[0x09]).await.expect("statistics");
    assert!(stats.text.unwrap_or_default().starts_with("Uptime"));
    let r = c.send_raw(b"\x04t\0").await.expect("field list");
    assert_eq!((r.status, r.columns), (ResponseStatus::Ok, 3));
    for opt in [0u8, 1] {
        let r = c.send_raw(&[0x1b, opt, 0]).await.expect("set option");
        assert_eq!(r.status, ResponseStatus::Ok);
    }
    assert_eq!(
        c.send_raw(&[0x0e]).await.expect("ping").status,
        ResponseStatus::Ok
    );
    assert_eq!(
        c.send_raw(b"\x02mysql").await.expect("init db").status,
        ResponseStatus::Err
    );
    assert_eq!(
        c.send_raw(b"\x02app").await.expect("init db").status,
        ResponseStatus::Ok
    );
    q(&mut c, "SET @v = 5").await;
    assert_eq!(
        c.send_raw(&[0x1f]).await.expect("reset").status,
        ResponseStatus::Ok
    );
    let r = q(&mut c, "SELECT @v IS NULL").await;
    assert_eq!(r.rows, 1);

    // LOCAL INFILE: the caller's bytes are the file.
    c.send_with_infile(
        &query("LOAD DATA LOCAL INFILE 'prod.csv' INTO TABLE t FIELDS TERMINATED BY ','"),
        Some(b"7,seven,70\n8,eight,80\n".to_vec()),
    )
    .await
    .expect("send");
    let r = c.read_response().await.expect("infile");
    assert_eq!(
        (r.status, r.affected),
        (ResponseStatus::Ok, 2),
        "{:?}",
        r.error
    );
    assert_eq!(q(&mut c, "SELECT id FROM t").await.rows, 5);

    // CHANGE_USER re-runs auth: to ed25519, then a refusal.
    let r = c
        .change_user("ed", "edpw", Some("app"))
        .await
        .expect("change user");
    assert_eq!(r.status, ResponseStatus::Ok, "{:?}", r.error);
    assert_eq!(c.plugin(), "client_ed25519");
    let r = q(&mut c, "SELECT CURRENT_USER()").await;
    assert_eq!(r.rows, 1);
    let r = c
        .change_user("nat", "wrong", None)
        .await
        .expect("change user");
    assert_eq!(r.error.map(|e| e.0), Some(1045));
}

fn query_cmd(cmd: u8, sql: &str) -> Vec<u8> {
    let mut p = query(sql);
    p[0] = cmd;
    p
}

#[tokio::test]
async fn compression_and_row_hashes() {
    let Some(db) = MariaDb::start("wire compression") else {
        return;
    };
    setup(&db).await;
    let mut a = admin(&db).await;
    a.query_drop("SET GLOBAL max_allowed_packet = 64 * 1024 * 1024")
        .await
        .expect("max_allowed_packet");
    a.disconnect().await.expect("disconnect");
    let mut plain = WireConn::connect(&addr(&db), ConnectParams::new("nat", "natpw", Some("app")))
        .await
        .expect("login");
    let mut p = ConnectParams::new("nat", "natpw", Some("app"));
    p.capabilities |= COMPRESS | DEPRECATE_EOF;
    let mut z = WireConn::connect(&addr(&db), p)
        .await
        .expect("compressed login");
    assert_ne!(z.capabilities().0 & COMPRESS, 0);

    let a = q(&mut plain, "SELECT * FROM t ORDER BY id").await;
    let b = q(&mut plain, "SELECT * FROM t2 ORDER BY id").await;
    let zc = q(&mut z, "SELECT * FROM t2 ORDER BY id").await;
    assert_eq!(a.rows, 3);
    assert_eq!((a.rows, a.hash), (b.rows, b.hash), "identical tables");
    assert_eq!(
        zc.hash, a.hash,
        "compression and DEPRECATE_EOF do not change row hashes"
    );
    let desc = q(&mut plain, "SELECT * FROM t ORDER BY id DESC").await;
    assert_ne!(desc.hash.ordered, a.hash.ordered);
    assert_eq!(desc.hash.unordered, a.hash.unordered);

    q(&mut z, "UPDATE t2 SET c = 'TWO' WHERE id = 2").await;
    let b = q(&mut plain, "SELECT * FROM t2 ORDER BY id").await;
    assert_eq!(b.rows, a.rows);
    assert_ne!(b.hash.ordered, a.hash.ordered);
    assert_ne!(b.hash.unordered, a.hash.unordered);
    let ks = q(&mut plain, "SELECT SUM(k) FROM t").await;
    let ks2 = q(&mut plain, "SELECT SUM(k) FROM t2").await;
    assert_eq!(ks.hash, ks2.hash, "a query not reading c still matches");

    // Big rows and a big command through the compression layer.
    let r = q(&mut z, "SELECT REPEAT('x', 3000000), REPEAT('y', 10)").await;
    assert_eq!(r.rows, 1);
    assert!(r.bytes > 3_000_000);
    let big = format!("SELECT LENGTH('{}')", "z".repeat(2_000_000));
    assert_eq!(q(&mut z, &big).await.rows, 1);
    // 16 MiB+ both ways (split on send, joined on read), plain and compressed.
    let huge = 17 * 1024 * 1024;
    for c in [&mut plain, &mut z] {
        let r = q(c, &format!("SELECT REPEAT('r', {huge})")).await;
        assert_eq!(r.rows, 1);
        assert!(r.bytes > huge as u64);
        let sql = format!("SELECT LENGTH('{}')", "s".repeat(huge));
        assert_eq!(q(c, &sql).await.rows, 1);
    }
    // Pipelining under compression.
    z.send(&query("SELECT id FROM t")).await.expect("send");
    z.send(&query("SELECT id FROM t2 WHERE id > 1"))
        .await
        .expect("send");
    assert_eq!(z.read_response().await.expect("r").rows, 3);
    assert_eq!(z.read_response().await.expect("r").rows, 2);
    assert_eq!(
        z.send_raw(&[0x09]).await.expect("stats").status,
        ResponseStatus::Ok
    );
    let r = z
        .change_user("ed", "edpw", Some("app"))
        .await
        .expect("change user");
    assert_eq!(r.status, ResponseStatus::Ok, "{:?}", r.error);
    assert_eq!(q(&mut z, "SELECT 1").await.rows, 1);
}

/// A self-signed certificate and key made with openssl in `dir`, or `None` without openssl.
fn make_cert(dir: &std::path::Path) -> Option<(String, String)> {
    std::fs::create_dir_all(dir).ok()?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| (cert.display().to_string(), key.display().to_string()))
}

#[tokio::test]
async fn tls_required_and_preferred() {
    let certs = std::env::temp_dir().join(format!("mrte-wire-tls-{}", std::process::id()));
    let Some((cert, key)) = make_cert(&certs) else {
        eprintln!("\n*** SKIP wire TLS: openssl not installed ***\n");
        return;
    };
    let extra = [format!("--ssl-cert={cert}"), format!("--ssl-key={key}")];
    let Some(db) = MariaDb::start_with("wire tls", &extra) else {
        return;
    };
    setup(&db).await;
    let tls_on = "SELECT 1 FROM information_schema.SESSION_STATUS \
                  WHERE VARIABLE_NAME = 'Ssl_cipher' AND VARIABLE_VALUE <> ''";
    for (mode, user, pw) in [
        (SslMode::Required, "nat", "natpw"),
        (SslMode::Preferred, "ed", "edpw"),
    ] {
        let mut p = ConnectParams::new(user, pw, Some("app"));
        p.ssl_mode = mode;
        p.capabilities |= COMPRESS;
        let mut c = WireConn::connect(&addr(&db), p).await.expect("TLS login");
        assert!(c.is_tls());
        assert_eq!(
            q(&mut c, tls_on).await.rows,
            1,
            "{mode:?}: the session is encrypted"
        );
        assert_eq!(q(&mut c, "SELECT * FROM t").await.rows, 3);
        let r = c
            .change_user("nat", "natpw", None)
            .await
            .expect("change user");
        assert_eq!(r.status, ResponseStatus::Ok);
    }
    let mut c = WireConn::connect(&addr(&db), ConnectParams::new("nat", "natpw", None))
        .await
        .expect("plain login");
    assert!(!c.is_tls());
    assert_eq!(q(&mut c, tls_on).await.rows, 0);
    let _ = std::fs::remove_dir_all(&certs);
}

/// A CA, a server certificate it signs for 127.0.0.1 and localhost, and an unrelated CA, made
/// with openssl in `dir`: (ca.pem, other-ca.pem, cert.pem, key.pem), or `None` without openssl.
fn make_ca_and_cert(dir: &std::path::Path) -> Option<[String; 4]> {
    std::fs::create_dir_all(dir).ok()?;
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    let steps: [Vec<String>; 4] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mrte test CA",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["-keyout".into(), p("ca.key"), "-out".into(), p("ca.pem")])
        .collect(),
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-keyout".into(),
            p("other.key"),
            "-out".into(),
            p("other-ca.pem"),
        ])
        .collect(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["-keyout".into(), p("key.pem"), "-out".into(), p("req.csr")])
        .collect(),
        ["x509", "-req", "-days", "2", "-set_serial", "2"]
            .iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-extfile", "ext.cnf",
                    "-out", "cert.pem",
                ]
                .iter()
                .map(|f| {
                    if f.starts_with('-') {
                        f.to_string()
                    } else {
                        p(f)
                    }
                }),
            )
            .collect(),
    ];
    for args in steps {
        let ok = std::process::Command::new("openssl")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
    }
    Some([p("ca.pem"), p("other-ca.pem"), p("cert.pem"), p("key.pem")])
}

#[tokio::test]
async fn tls_verify_ca_and_verify_identity() {
    let dir = std::env::temp_dir().join(format!("mrte-wire-tls-ca-{}", std::process::id()));
    let Some([ca, other_ca, cert, key]) = make_ca_and_cert(&dir) else {
        eprintln!("\n*** SKIP wire TLS verify: openssl not installed ***\n");
        return;
    };
    let extra = [format!("--ssl-cert={cert}"), format!("--ssl-key={key}")];
    let Some(db) = MariaDb::start_with("wire tls verify", &extra) else {
        return;
    };
    setup(&db).await;
    let params = |mode: SslMode, ca: Option<&str>, name: Option<&str>| {
        let mut p = ConnectParams::new("nat", "natpw", Some("app"));
        p.ssl_mode = mode;
        p.ssl_ca = ca.map(Into::into);
        p.ssl_name = name.map(Into::into);
        p
    };
    let tls_on = "SELECT 1 FROM information_schema.SESSION_STATUS \
                  WHERE VARIABLE_NAME = 'Ssl_cipher' AND VARIABLE_VALUE <> ''";
    // The right CA: both modes by address; verify_ca also under a name the certificate lacks.
    for (mode, name) in [
        (SslMode::VerifyIdentity, None),
        (SslMode::VerifyIdentity, Some("localhost")),
        (SslMode::VerifyCa, None),
        (SslMode::VerifyCa, Some("db.elsewhere.example")),
    ] {
        let mut c = WireConn::connect(&addr(&db), params(mode, Some(&ca), name))
            .await
            .unwrap_or_else(|e| panic!("{mode:?} {name:?}: {e}"));
        assert!(c.is_tls());
        assert_eq!(q(&mut c, tls_on).await.rows, 1, "{mode:?}: encrypted");
        assert_eq!(q(&mut c, "SELECT * FROM t").await.rows, 3);
    }
    // Refused: a name the certificate lacks (verify_identity), another CA, no CA at all.
    for (mode, ca, name) in [
        (
            SslMode::VerifyIdentity,
            Some(ca.as_str()),
            Some("db.elsewhere.example"),
        ),
        (SslMode::VerifyIdentity, Some(other_ca.as_str()), None),
        (SslMode::VerifyCa, Some(other_ca.as_str()), None),
        (SslMode::VerifyCa, None, None),
    ] {
        let r = WireConn::connect(&addr(&db), params(mode, ca, name)).await;
        assert!(r.is_err(), "{mode:?} {ca:?} {name:?} logged in");
    }
    // Required still takes any certificate.
    let c = WireConn::connect(
        &addr(&db),
        params(SslMode::Required, None, Some("x.example")),
    )
    .await
    .expect("required");
    assert!(c.is_tls());
    control_plane_follows_ssl_mode(&db, &ca, &other_ca).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The planner's login for a session whose prod client negotiated `ext` (MariaDB extended
/// capabilities), as the executor makes it.
fn planned_login(db: &MariaDb, ext: u32) -> ConnectParams {
    use mrte_capture::event::SessionEvent;
    use mrte_replay::plan::{Action, PlanConfig, Planner};
    use mrte_replay::target::TargetDsn;
    let target = TargetDsn::parse_no_env(&db.dsn(Some("app"))).expect("dsn");
    let SessionEvent::Open(open) = common::open(1, 40000) else {
        unreachable!()
    };
    let mut p = Planner::new(std::sync::Arc::new(PlanConfig::new(target.clone())), &open);
    let SessionEvent::Login(mut login) = common::login("nat", Some("app")) else {
        unreachable!()
    };
    login.mariadb_capabilities = ext;
    p.handle_event(SessionEvent::Login(login));
    p.handle_event(common::query(0, "SELECT 1"));
    match p.poll_action() {
        Some(Action::Connect(c)) => c.connect_params(&target),
        a => panic!("{a:?}"),
    }
}

#[tokio::test]
async fn the_test_login_gets_the_prod_clients_mariadb_extended_capabilities() {
    use mrte_replay::wire::caps::{MARIADB_EXTENDED_METADATA, MARIADB_STMT_BULK_OPERATIONS};
    let Some(db) = MariaDb::start("wire ext caps") else {
        return;
    };
    setup(&db).await;
    let mut a = admin(&db).await;
    a.query_drop("CREATE TABLE app.j (id INT PRIMARY KEY, doc JSON); INSERT INTO app.j VALUES (1, '{\"a\":1}')")
        .await
        .expect("json table");
    a.disconnect().await.expect("disconnect");
    let sql = "SELECT id, doc FROM app.j";

    // node mariadb's: BULK | EXTENDED_METADATA | CACHE_METADATA (masked: responses without
    // column definitions could not be hashed).
    let mut c = WireConn::connect(&addr(&db), planned_login(&db, 0x1c))
        .await
        .expect("login");
    let ext = c.capabilities().1;
    assert_eq!(
        ext,
        MARIADB_STMT_BULK_OPERATIONS | MARIADB_EXTENDED_METADATA,
        "negotiated {ext:#x} (server offers {:#x})",
        c.server().mariadb_capabilities
    );
    let with = q(&mut c, sql).await;
    c.quit().await.expect("quit");

    // A client that negotiated none gets none, and plain column definitions.
    let mut c = WireConn::connect(&addr(&db), planned_login(&db, 0))
        .await
        .expect("login");
    assert_eq!(c.capabilities().1, 0);
    let without = q(&mut c, sql).await;
    c.quit().await.expect("quit");

    // The server sent the JSON column's extended type info only when asked: the same rows and
    // metadata hash (which leaves extended metadata out), more bytes.
    assert_eq!((with.rows, with.hash), (without.rows, without.hash));
    assert_eq!(with.meta_hash, without.meta_hash);
    assert!(
        with.bytes > without.bytes,
        "extended metadata: {} bytes, without: {}",
        with.bytes,
        without.bytes
    );

    // (This server has no certificate.) The control plane's `preferred` falls back to plain;
    // `required` fails and says why.
    use mrte_replay::{control, target::TargetDsn};
    let dsn = |q: &str| {
        TargetDsn::parse_no_env(&format!("mysql://nat:natpw@127.0.0.1:{}/?{q}", db.port))
            .expect("dsn")
    };
    let t = std::time::Duration::from_secs(5);
    let c = control::connect(&dsn("ssl-mode=preferred"), t)
        .await
        .expect("preferred, plain");
    c.disconnect().await.expect("disconnect");
    let e = control::connect(&dsn("ssl-mode=required"), t)
        .await
        .map(|_| ())
        .expect_err("TLS without a certificate")
        .to_string();
    assert!(e.contains("ssl-mode=required"), "{e}");
}

/// The mysql_async control plane (processlist look-up, the snapshot position read before a run)
/// follows the DSN's ssl-mode and ssl-ca as the replay connections do.
async fn control_plane_follows_ssl_mode(db: &MariaDb, ca: &str, other_ca: &str) {
    use mrte_replay::control;
    use mrte_replay::target::{ProdLookup, TargetDsn};
    use std::time::Duration;
    let dsn = |q: &str| {
        TargetDsn::parse_no_env(&format!("mysql://nat:natpw@127.0.0.1:{}/?{q}", db.port))
            .expect("dsn")
    };
    let cipher = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
                  WHERE VARIABLE_NAME = 'Ssl_cipher'";
    for (q, tls) in [
        (format!("ssl-mode=verify_identity&ssl-ca={ca}"), true),
        (format!("ssl-mode=verify_ca&ssl-ca={ca}"), true),
        ("ssl-mode=required".into(), true),
        ("ssl-mode=preferred".into(), true),
        ("ssl-mode=disabled".into(), false),
        (String::new(), false),
    ] {
        let mut c = control::connect(&dsn(&q), Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        let v: Option<String> = c.query_first(cipher).await.expect("status");
        assert_eq!(
            v.as_ref().is_some_and(|v| !v.is_empty()),
            tls,
            "{q}: cipher {v:?}"
        );
        c.disconnect().await.expect("disconnect");
    }
    // A CA that did not sign the server's certificate: refused, and the error says with what.
    let wrong = dsn(&format!("ssl-mode=verify_ca&ssl-ca={other_ca}"));
    let e = control::connect(&wrong, Duration::from_secs(5))
        .await
        .map(|_| ())
        .expect_err("wrong CA accepted")
        .to_string();
    assert!(
        e.contains("ssl-mode=verify_ca") && e.contains(other_ca) && e.contains("certificate"),
        "{e}"
    );
    // The pre-flight read of prod's position (`--snapshot-pos` with `--prod`) fails with it.
    let e = mrte_replay::sync::snapshot::prod_position(&wrong, "writes:0")
        .await
        .expect_err("wrong CA accepted");
    assert!(e.starts_with("--prod: ") && e.contains(other_ca), "{e}");
    // So does the processlist look-up; a verifying mode without a CA never connects.
    let lookup = ProdLookup::new(wrong);
    assert!(lookup.lookup("127.0.0.1:1".parse().unwrap()).await.is_err());
    let e = control::connect(&dsn("ssl-mode=verify_identity"), Duration::from_secs(5))
        .await
        .map(|_| ())
        .expect_err("no CA accepted")
        .to_string();
    assert!(e.contains("needs ssl-ca"), "{e}");
}
