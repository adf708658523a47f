//! Handshake and auth by byte vectors. Expected scrambles were computed independently with
//! python3 (hashlib, cryptography), not with this code:
//!
//! ```text
//! scr = bytes(range(0x41, 0x41 + 20)); pw = b"secret-pw"
//! s1 = sha1(pw); native = s1 XOR sha1(scr + sha1(s1))
//! h1 = sha256(pw); csha2 = h1 XOR sha256(sha256(h1) + scr)
//! ed = Ed25519PrivateKey.from_private_bytes(b"0123456789abcdef0123456789ABCDEF").sign(bytes(range(32)))
//! ```
//! (MariaDB's client_ed25519 takes SHA-512(password) as the expanded secret key, which for a
//! 32-byte password is exactly RFC 8032 signing with the password as the seed.)
//! RSA: testdata/rsa_test_key.pem made with `openssl genpkey -algorithm RSA`; the encrypted
//! password is decrypted with `openssl pkeyutl` (OAEP) when openssl is installed.

use super::*;

const NATIVE: &str = "6e8bbe112c97ed6080d969684c9a78617982027a";
const CSHA2: &str = "1336c3121a995f03479899d6a3f63fd914d589c199a3d14fa5d8b52e98bf0909";
const ED: &str = "bcb423b81f80c21c8d47db7c0b6873aa3a2779ba7b4a01c32c04a1eb974c83926200298969e5f50f2a0d0c5264b319c3530b115b270d819a60191ee19ad27301";
const PUB_PEM: &[u8] = include_bytes!("testdata/rsa_test_pub.pem");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn scramble() -> Vec<u8> {
    (0x41..0x41 + 20).collect()
}

/// MariaDB 10.11's caps (no CLIENT_MYSQL bit) with SSL optional.
const MARIADB_CAPS: u32 = 0xf7fe & 0xffff | (0x81bf << 16);

fn greeting(plugin: &str, caps: u32, ext: u32) -> Vec<u8> {
    let s = scramble();
    let mut g = vec![10];
    g.extend_from_slice(b"5.5.5-10.11.19-MariaDB\0");
    g.extend_from_slice(&77u32.to_le_bytes());
    g.extend_from_slice(&s[..8]);
    g.push(0);
    g.extend_from_slice(&(caps as u16).to_le_bytes());
    g.push(45);
    g.extend_from_slice(&2u16.to_le_bytes());
    g.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    g.push(21);
    g.extend_from_slice(&[0; 6]);
    g.extend_from_slice(&ext.to_le_bytes());
    g.extend_from_slice(&s[8..]);
    g.push(0);
    g.extend_from_slice(plugin.as_bytes());
    g.push(0);
    g
}

fn params(pw: &str) -> ConnectParams {
    let mut p = ConnectParams::new("app", pw, Some("shop"));
    p.collation = 33;
    p.capabilities = DEFAULT_CAPABILITIES | DEPRECATE_EOF | MULTI_STATEMENTS | COMPRESS | SSL;
    p.mariadb_capabilities =
        MARIADB_PROGRESS | MARIADB_STMT_BULK_OPERATIONS | MARIADB_CACHE_METADATA;
    p.attributes = vec![("_client_name".into(), "x".into())];
    p
}

fn ok() -> Vec<u8> {
    vec![0, 0, 0, 2, 0, 0, 0]
}

fn send(step: Step) -> (u8, Vec<u8>) {
    match step {
        Step::Send { seq, payload } => (seq, payload),
        other => panic!("want Send, got {other:?}"),
    }
}

/// Auth data of a HandshakeResponse41 with PLUGIN_AUTH_LENENC (short data).
fn auth_of(resp: &[u8], user: &str) -> Vec<u8> {
    let at = 32 + user.len() + 1;
    let n = resp[at] as usize;
    resp[at + 1..at + 1 + n].to_vec()
}

#[test]
fn native_login_byte_exact() {
    let mut hs = Handshake::new(params("secret-pw"), false);
    let (seq, r) = send(
        hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS, 0x1f))
            .unwrap(),
    );
    assert_eq!(seq, 1);
    let (caps, ext) = hs.negotiated();
    assert_eq!(&r[..4], &caps.to_le_bytes());
    assert_eq!(r[8], 33, "collation");
    assert_eq!(&r[28..32], &ext.to_le_bytes());
    assert_eq!(&r[32..36], b"app\0");
    assert_eq!(auth_of(&r, "app"), hex(NATIVE));
    let tail = &r[32 + 4 + 21..];
    assert!(tail.starts_with(b"shop\0mysql_native_password\0"));
    assert_eq!(&tail[27..], b"\x0f\x0c_client_name\x01x");
    assert_eq!(hs.on_packet(2, &ok()).unwrap(), Step::Done);
    assert!(hs.compressed());
    assert_eq!(hs.server().connection_id, 77);
}

#[test]
fn negotiation_masks_and_strips() {
    let p = params("x");
    let (c, e) = negotiate(&p, MARIADB_CAPS & !COMPRESS, 0x1f, false);
    assert_eq!(c & (SSL | COMPRESS | LONG_PASSWORD), 0);
    assert_ne!(
        c & (DEPRECATE_EOF | MULTI_STATEMENTS | CONNECT_WITH_DB | CONNECT_ATTRS),
        0
    );
    assert_eq!(
        e, MARIADB_STMT_BULK_OPERATIONS,
        "progress and cached metadata stripped"
    );
    // A MySQL server (CLIENT_MYSQL set): no extended caps, LONG_PASSWORD kept.
    let (c, e) = negotiate(&p, 0xffff_ffff, 0x1f, true);
    assert_eq!(e, 0);
    assert_ne!(c & SSL, 0);
    assert_ne!(c & LONG_PASSWORD, 0);
}

#[test]
fn wrong_password_is_one_auth_error() {
    let mut hs = Handshake::new(params("bad"), false);
    hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS, 0))
        .unwrap();
    let mut err = vec![0xff, 0x15, 0x04, b'#'];
    err.extend_from_slice(b"28000Access denied for user 'app'@'localhost'");
    match hs.on_packet(2, &err) {
        Err(WireError::Auth { code, message }) => {
            assert_eq!(code, 1045);
            assert!(message.starts_with("Access denied"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // An ERR instead of a greeting (too many connections) is an auth error too.
    let mut hs = Handshake::new(params("x"), false);
    let e = hs.on_packet(0, b"\xff\x10\x04Too many connections");
    assert!(matches!(e, Err(WireError::Auth { code: 1040, .. })));
}

#[test]
fn ed25519_switch_signs_the_nonce() {
    let mut hs = Handshake::new(params("0123456789abcdef0123456789ABCDEF"), false);
    hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS, 0))
        .unwrap();
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"client_ed25519\0");
    sw.extend(0u8..32);
    let (seq, r) = send(hs.on_packet(2, &sw).unwrap());
    assert_eq!(seq, 3);
    assert_eq!(r, hex(ED));
    assert_eq!(hs.plugin(), Some("client_ed25519"));
    assert_eq!(hs.on_packet(4, &ok()).unwrap(), Step::Done);
}

#[test]
fn unknown_plugin_has_its_own_error() {
    let mut hs = Handshake::new(params("x"), false);
    hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS, 0))
        .unwrap();
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"auth_gssapi_client\0abc");
    match hs.on_packet(2, &sw) {
        Err(WireError::UnsupportedPlugin(p)) => assert_eq!(p, "auth_gssapi_client"),
        other => panic!("{other:?}"),
    }
    let mut hs = Handshake::new(params("x"), false);
    hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS, 0))
        .unwrap();
    assert!(matches!(
        hs.on_packet(2, &[0xfe]),
        Err(WireError::UnsupportedPlugin(_))
    ));
}

/// Decrypt `ct` with the test key via openssl (OAEP, SHA-1), or `None` without openssl.
fn openssl_decrypt(ct: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/wire/testdata/rsa_test_key.pem"
    );
    let mut child = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey", key])
        .args(["-pkeyopt", "rsa_padding_mode:oaep"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(ct).ok()?;
    let out = child.wait_with_output().ok()?;
    assert!(out.status.success(), "openssl could not decrypt");
    Some(out.stdout)
}

fn check_rsa(ct: &[u8], scr: &[u8], pw: &[u8]) {
    assert_eq!(ct.len(), 256);
    match openssl_decrypt(ct) {
        Some(plain) => {
            let mut want = pw.to_vec();
            want.push(0);
            for (i, b) in want.iter_mut().enumerate() {
                *b ^= scr[i % scr.len()];
            }
            assert_eq!(plain, want);
        }
        None => eprintln!("*** SKIP RSA decryption check: openssl not installed ***"),
    }
}

fn more(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x01];
    v.extend_from_slice(data);
    v
}

#[test]
fn caching_sha2_fast_and_full_auth_plain() {
    let mut hs = Handshake::new(params("secret-pw"), false);
    let (_, r) = send(
        hs.on_packet(0, &greeting("caching_sha2_password", MARIADB_CAPS, 0))
            .unwrap(),
    );
    assert_eq!(auth_of(&r, "app"), hex(CSHA2));
    assert!(r.ends_with(b"caching_sha2_password\0\x0f\x0c_client_name\x01x"));
    // Fast auth: the server had the hash cached.
    assert_eq!(hs.on_packet(2, &more(&[3])).unwrap(), Step::Wait);
    assert_eq!(hs.on_packet(3, &ok()).unwrap(), Step::Done);

    // Full auth over plain TCP: ask for the key, encrypt with it.
    let mut hs = Handshake::new(params("secret-pw"), false);
    hs.on_packet(0, &greeting("caching_sha2_password", MARIADB_CAPS, 0))
        .unwrap();
    assert_eq!(send(hs.on_packet(2, &more(&[4])).unwrap()), (3, vec![2]));
    let (seq, ct) = send(hs.on_packet(4, &more(PUB_PEM)).unwrap());
    assert_eq!(seq, 5);
    check_rsa(&ct, &scramble(), b"secret-pw");
    assert_eq!(hs.on_packet(6, &ok()).unwrap(), Step::Done);
}

#[test]
fn caching_sha2_full_auth_over_tls_is_cleartext() {
    let mut p = params("secret-pw");
    p.ssl_mode = SslMode::Required;
    let mut hs = Handshake::new(p, true);
    let step = hs
        .on_packet(0, &greeting("caching_sha2_password", MARIADB_CAPS | SSL, 0))
        .unwrap();
    let Step::StartTls { seq: 1, payload } = step else {
        panic!("{step:?}")
    };
    assert_eq!(payload.len(), 32);
    assert_ne!(
        u32::from_le_bytes(payload[..4].try_into().unwrap()) & SSL,
        0
    );
    let (seq, _) = send(hs.on_tls_ready().unwrap());
    assert_eq!(seq, 2);
    assert_eq!(
        send(hs.on_packet(3, &more(&[4])).unwrap()),
        (4, b"secret-pw\0".to_vec())
    );
}

#[test]
fn sha256_password_switch_plain_and_tls() {
    let mut sw = vec![0xfe];
    sw.extend_from_slice(b"sha256_password\0");
    let nonce: Vec<u8> = (1..=20).collect();
    sw.extend_from_slice(&nonce);
    sw.push(0);

    let mut hs = Handshake::new(params("secret-pw"), false);
    hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS, 0))
        .unwrap();
    assert_eq!(send(hs.on_packet(2, &sw).unwrap()), (3, vec![1]));
    let (_, ct) = send(hs.on_packet(4, &more(PUB_PEM)).unwrap());
    check_rsa(&ct, &nonce, b"secret-pw");

    let mut p = params("secret-pw");
    p.ssl_mode = SslMode::Preferred;
    let mut hs = Handshake::new(p, true);
    hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS | SSL, 0))
        .unwrap();
    hs.on_tls_ready().unwrap();
    assert_eq!(
        send(hs.on_packet(3, &sw).unwrap()),
        (4, b"secret-pw\0".to_vec())
    );
}

#[test]
fn bad_rsa_key_is_a_plugin_error() {
    let mut hs = Handshake::new(params("secret-pw"), false);
    hs.on_packet(0, &greeting("caching_sha2_password", MARIADB_CAPS, 0))
        .unwrap();
    hs.on_packet(2, &more(&[4])).unwrap();
    let e = hs.on_packet(4, &more(b"-----BEGIN PUBLIC KEY-----\nnope\n"));
    assert!(matches!(e, Err(WireError::Plugin { .. })), "{e:?}");
}

#[test]
fn ssl_modes() {
    assert_eq!(
        SslMode::from_dsn("mysql://a@h/db").unwrap(),
        SslMode::Disabled
    );
    assert_eq!(
        SslMode::from_dsn("mysql://a@h/db?x=1&ssl-mode=REQUIRED").unwrap(),
        SslMode::Required
    );
    assert!(SslMode::from_dsn("mysql://a@h?ssl-mode=maybe").is_err());
    let dsn = "mysql://a@h/db?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem";
    assert_eq!(SslMode::from_dsn(dsn).unwrap(), SslMode::VerifyIdentity);
    assert_eq!(SslMode::ca_from_dsn(dsn), Some("/etc/ca.pem".into()));
    assert_eq!(
        SslMode::from_dsn("mysql://a@h?ssl_mode=verify_ca").unwrap(),
        SslMode::VerifyCa
    );
    assert_eq!(SslMode::ca_from_dsn("mysql://a@h?ssl-mode=required"), None);
    let t = crate::target::TargetDsn::parse_no_env(dsn).unwrap();
    assert_eq!(
        (t.ssl_mode, t.db.as_deref()),
        (SslMode::VerifyIdentity, Some("db"))
    );
    assert!(crate::target::TargetDsn::parse_no_env("mysql://a@h?ssl-mode=maybe").is_err());
    // Verifying modes need TLS like REQUIRED does.
    let mut p = params("x");
    p.ssl_mode = SslMode::VerifyCa;
    let mut hs = Handshake::new(p, true);
    let e = hs.on_packet(
        0,
        &greeting("mysql_native_password", MARIADB_CAPS & !SSL, 0),
    );
    assert!(matches!(e, Err(WireError::TlsUnavailable(_))));
    let mut p = params("x");
    p.ssl_mode = SslMode::Required;
    let mut hs = Handshake::new(p.clone(), true);
    let e = hs.on_packet(
        0,
        &greeting("mysql_native_password", MARIADB_CAPS & !SSL, 0),
    );
    assert!(matches!(e, Err(WireError::TlsUnavailable(_))));
    let mut hs = Handshake::new(p, false);
    let e = hs.on_packet(0, &greeting("mysql_native_password", MARIADB_CAPS | SSL, 0));
    assert!(matches!(e, Err(WireError::TlsUnavailable(_))));
}

#[test]
fn change_user_payload() {
    let server = ServerInfo {
        scramble: scramble(),
        plugin: "mysql_native_password".into(),
        ..ServerInfo::default()
    };
    let caps = SECURE_CONNECTION | PLUGIN_AUTH | PROTOCOL_41;
    let (p, mut x) = change_user(
        &server,
        caps,
        45,
        "app",
        "secret-pw",
        Some("db2"),
        &[],
        false,
    )
    .unwrap();
    let mut want = vec![0x11];
    want.extend_from_slice(b"app\0\x14");
    want.extend_from_slice(&hex(NATIVE));
    want.extend_from_slice(b"db2\0\x2d\x00mysql_native_password\0");
    assert_eq!(p, want);
    assert_eq!(x.on_packet(&ok()).unwrap(), AuthStep::Ok);
}

#[test]
fn garbage_never_panics() {
    use proptest::prelude::*;
    proptest!(|(g in proptest::collection::vec(any::<u8>(), 0..200), a in proptest::collection::vec(any::<u8>(), 0..80))| {
        let mut hs = Handshake::new(params("pw"), true);
        let _ = hs.on_packet(0, &g);
        let mut hs = Handshake::new(params("pw"), false);
        if hs.on_packet(0, &greeting("caching_sha2_password", MARIADB_CAPS, 0)).is_ok() {
            let _ = hs.on_packet(2, &a);
            let _ = hs.on_packet(3, &a);
        }
        let mut full = greeting("mysql_native_password", MARIADB_CAPS, 0);
        full.truncate(g.len().min(full.len()));
        let _ = Handshake::new(params("pw"), false).on_packet(0, &full);
    });
}
