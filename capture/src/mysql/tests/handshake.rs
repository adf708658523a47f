//! MariaDB extended capabilities, from a real handshake: node `mariadb` 3.5.4 against MariaDB
//! 10.11 (tests/fixtures/mariadbjs.pcap, its pool's first connection).

use super::*;

/// The server's greeting (reserved bytes end in extended capabilities 0x1d).
const GREETING: &str = "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531003100000051782b67476e727300feff080200ff81150000000000001d0000006b3f394074494d2a2725237e006d7973716c5f6e61746976655f70617373776f726400";
/// The client's HandshakeResponse41 (no CLIENT_MYSQL; filler ends in 0x1c: BULK,
/// EXTENDED_METADATA, CACHE_METADATA).
const RESPONSE: &str = "c70000010aa3be0100000040e0000000000000000000000000000000000000001c00000073627465737400143d285aac25fce9bdc4a905c56dca71422ec3aa006472765f6d6462006d7973716c5f6e61746976655f70617373776f726400fc6a000c5f636c69656e745f6e616d65164d61726961444220636f6e6e6563746f722f4e6f64650f5f636c69656e745f76657273696f6e05332e352e34035f6f73056c696e75780c5f636c69656e745f686f737402766d0d5f6e6f64655f76657273696f6e0732302e32302e32";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn login_of(stream: &[(Direction, Vec<u8>)]) -> crate::event::Login {
    let mut c = Connection::new(DecoderConfig::default(), false);
    for (i, (dir, bytes)) in stream.iter().enumerate() {
        c.handle_data(*dir, bytes, 10 * (i as u64 + 1));
    }
    events(&mut c)
        .into_iter()
        .find_map(|e| match e {
            ConnEvent::Login(l) => Some(*l),
            _ => None,
        })
        .expect("a login")
}

#[test]
fn mariadb_extended_capabilities_are_negotiated_from_both_sides() {
    let l = login_of(&[
        (Direction::ToClient, hex(GREETING)),
        (Direction::ToServer, hex(RESPONSE)),
        (Direction::ToClient, ok(2, 0, 2)),
    ]);
    assert_eq!(l.user.as_deref(), Some("sbtest"));
    assert_eq!(l.db.as_deref(), Some("drv_mdb"));
    assert_eq!(l.capabilities & caps::LONG_PASSWORD, 0);
    assert_eq!(l.mariadb_capabilities, 0x1c);

    // The server offers less: only what both sides have.
    let mut g = hex(GREETING);
    let reserved_end = g.len() - 13 - 22; // before auth data 2 and the plugin name
    g[reserved_end - 4] = 0x05; // PROGRESS | BULK
    let l = login_of(&[
        (Direction::ToClient, g),
        (Direction::ToServer, hex(RESPONSE)),
        (Direction::ToClient, ok(2, 0, 2)),
    ]);
    assert_eq!(l.mariadb_capabilities, 0x04);

    // No greeting seen: the client's own; a client claiming CLIENT_MYSQL has none.
    let l = login_of(&[
        (Direction::ToServer, hex(RESPONSE)),
        (Direction::ToClient, ok(2, 0, 2)),
    ]);
    assert_eq!(l.mariadb_capabilities, 0x1c);
    let mut r = hex(RESPONSE);
    r[4] |= 1;
    let l = login_of(&[
        (Direction::ToClient, hex(GREETING)),
        (Direction::ToServer, r),
        (Direction::ToClient, ok(2, 0, 2)),
    ]);
    assert_eq!(l.mariadb_capabilities, 0);
}

#[test]
fn a_mysql_servers_greeting_gives_no_extended_capabilities() {
    // The synthetic greeting claims CLIENT_MYSQL (a MySQL server): its reserved bytes are not
    // read even when non-zero, and the client's filler is ignored.
    let mut g = greeting(CAPS);
    let n = g.len();
    g[n - 13 - 22 - 1] = 0xff;
    let l = login_of(&[
        (Direction::ToClient, g),
        (Direction::ToServer, hex(RESPONSE)),
        (Direction::ToClient, ok(2, 0, 2)),
    ]);
    assert_eq!(l.mariadb_capabilities, 0);
}

#[test]
fn an_ssl_request_carries_the_extended_capabilities_too() {
    // node mariadb's response cut to an SSLRequest: 32 bytes, CLIENT_SSL set.
    let mut r = hex(RESPONSE)[..4 + 32].to_vec();
    r[0] = 32;
    r[4 + 1] |= (caps::SSL >> 8) as u8;
    let l = login_of(&[
        (Direction::ToClient, hex(GREETING)),
        (Direction::ToServer, r),
    ]);
    assert!(l.tls);
    assert_eq!(l.mariadb_capabilities, 0x1c);
}
