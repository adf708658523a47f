//! Test helpers: a throwaway MariaDB server (own datadir, socket and port on 127.0.0.1, general
//! log on) killed on drop, a general-log parser, and builders for hand-made session events.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mrte_capture::event::{
    CloseReason, Command, CommandFlags, CommandRecord, FlowKey, Login, PrepareOk, Response,
    ResponseStatus, SessionClose, SessionEvent, SessionOpen,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn find(names: &[&str]) -> Option<PathBuf> {
    for n in names {
        for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// A running throwaway mariadbd; killed and its directory removed on drop.
pub struct MariaDb {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Scratch directory (datadir, socket, logs).
    pub dir: PathBuf,
    /// General query log file.
    pub general_log: PathBuf,
    server: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl MariaDb {
    /// Start a fresh server, or `None` (after printing a loud SKIP) if MariaDB is not installed.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[])
    }

    /// [`Self::start`] with extra server options (e.g. `--ssl-cert=...`).
    pub fn start_with(test: &str, extra: &[String]) -> Option<Self> {
        let (Some(server), Some(install)) = (
            find(&["mariadbd", "mysqld"]),
            find(&["mariadb-install-db", "mysql_install_db"]),
        ) else {
            eprintln!("\n*** SKIP {test}: mariadbd / mariadb-install-db not installed ***\n");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "mrte-replay-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("create test dir");
        let out = Proc::new(install)
            .env("TMPDIR", dir.join("tmp"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg("--user=root")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run mariadb-install-db");
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut db = Self {
            port,
            general_log: dir.join("general.log"),
            dir,
            server,
            child: None,
            extra: extra.to_vec(),
        };
        db.launch();
        Some(db)
    }

    fn launch(&mut self) {
        let d = &self.dir;
        let child = Proc::new(&self.server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg("--user=root")
            .arg("--general-log=1")
            .arg(format!("--general-log-file={}", self.general_log.display()))
            .arg("--innodb-buffer-pool-size=32M")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "mariadbd exited early ({st}): {}",
                        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
                    );
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.pid_file_present() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not come up in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid_file_present(&self) -> bool {
        self.dir.join("mysqld.pid").exists()
    }

    /// `mysql://root@127.0.0.1:PORT[/db]`.
    pub fn dsn(&self, db: Option<&str>) -> String {
        match db {
            Some(db) => format!("mysql://root@127.0.0.1:{}/{db}", self.port),
            None => format!("mysql://root@127.0.0.1:{}", self.port),
        }
    }

    /// SIGKILL the server and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("mysqld.pid"));
    }

    /// Start the server again on the same datadir and port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// General log entries: (thread id, command, argument) in file order.
    pub fn general_log_entries(&self) -> Vec<(u64, String, String)> {
        parse_general_log(&String::from_utf8_lossy(
            &std::fs::read(&self.general_log).unwrap_or_default(),
        ))
    }

    /// Wait (up to 10 s) until the general log satisfies `f`, then return its entries.
    pub async fn general_log_until(
        &self,
        mut f: impl FnMut(&[(u64, String, String)]) -> bool,
    ) -> Vec<(u64, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.general_log_entries();
            if f(&log) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// General log entries grouped by thread id.
    pub fn general_log_by_thread(&self) -> BTreeMap<u64, Vec<(String, String)>> {
        let mut m: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
        for (id, c, a) in self.general_log_entries() {
            m.entry(id).or_default().push((c, a));
        }
        m
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() || std::env::var_os("MRTE_KEEP_TEST_DB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Parse a MariaDB general query log.
pub fn parse_general_log(text: &str) -> Vec<(u64, String, String)> {
    let re = regex::Regex::new(
        r"^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2})?\s+(\d+)\s+([A-Za-z][A-Za-z ]*?)\t(.*)$",
    )
    .expect("regex");
    let mut out: Vec<(u64, String, String)> = Vec::new();
    let mut in_body = false;
    for line in text.lines() {
        if line.starts_with("Time\t") {
            in_body = true;
            continue;
        }
        if !in_body {
            continue;
        }
        if line.contains(", Version: ") && line.ends_with("started with:") {
            in_body = false;
            continue;
        }
        match re.captures(line) {
            Some(c) => out.push((c[1].parse().unwrap_or(0), c[2].to_owned(), c[3].to_owned())),
            None => {
                if let Some(last) = out.last_mut() {
                    last.2.push('\n');
                    last.2.push_str(line);
                }
            }
        }
    }
    out
}

/// A mysql_async connection for setup and checks.
pub async fn admin(db: &MariaDb) -> mysql_async::Conn {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let opts = mysql_async::OptsBuilder::from_opts(
            mysql_async::Opts::from_url(&db.dsn(None)).expect("dsn"),
        )
        .prefer_socket(false);
        match mysql_async::Conn::new(opts).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to test mariadbd: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Session open event for client port `port`.
pub fn open(id: u64, port: u16) -> SessionEvent {
    SessionEvent::Open(Box::new(SessionOpen {
        id,
        key: FlowKey {
            client: format!("198.18.0.10:{port}").parse().expect("addr"),
            server: "198.18.0.2:3306".parse().expect("addr"),
        },
        ts_us: 1_700_000_000_000_000,
        midstream: false,
    }))
}

/// What the mariadb command-line client negotiates with MariaDB (multi-statements included).
pub const CLIENT_CAPS: u32 = {
    use mrte_capture::mysql::caps::*;
    LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | LOCAL_FILES
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC
        | SESSION_TRACK
};

/// Successful login as `user` with default db `db`.
pub fn login(user: &str, db: Option<&str>) -> SessionEvent {
    SessionEvent::Login(Box::new(Login {
        ts_us: 1_700_000_000_000_100,
        user: Some(user.to_owned()),
        db: db.map(str::to_owned),
        capabilities: CLIENT_CAPS,
        mariadb_capabilities: 0,
        auth_plugin: None,
        collation: None,
        server_version: None,
        connection_id: Some(1),
        tls: false,
        compressed: false,
        midstream: false,
        ok: true,
        error_code: None,
    }))
}

/// An OK production response.
pub fn ok() -> Response {
    Response {
        status: ResponseStatus::Ok,
        first_byte_us: Some(1_700_000_000_000_300),
        last_byte_us: Some(1_700_000_000_000_400),
        ..Response::default()
    }
}

/// PREPARE_OK with production statement id `id`.
pub fn prepare_ok(id: u32, params: u16) -> Response {
    Response {
        prepare_ok: Some(PrepareOk {
            stmt_id: id,
            num_columns: 0,
            num_params: params,
            warnings: 0,
        }),
        ..ok()
    }
}

/// A command event.
pub fn cmd(seq: u64, command: Command, response: Response) -> SessionEvent {
    SessionEvent::Command(Box::new(CommandRecord {
        seq,
        ts_us: 1_700_000_000_000_200 + seq * 1000,
        command,
        response,
        db: None,
        user: None,
        flags: CommandFlags::default(),
        raw: Default::default(),
        infile: None,
        commit: Default::default(),
    }))
}

/// A COM_QUERY event with an OK response.
pub fn query(seq: u64, sql: &str) -> SessionEvent {
    cmd(
        seq,
        Command::Query {
            sql: sql.as_bytes().to_vec().into(),
            attributes: Vec::new(),
        },
        ok(),
    )
}

/// Close event.
pub fn close(reason: CloseReason) -> SessionEvent {
    SessionEvent::Close(SessionClose {
        ts_us: 1_700_000_000_900_000,
        reason,
    })
}

/// Outcomes collected by the sink.
pub type Collected = Arc<std::sync::Mutex<Vec<mrte_replay::Outcome>>>;

/// A sink that collects outcomes.
pub fn collector() -> (Collected, impl FnMut(mrte_replay::Outcome) + Send + 'static) {
    let v: Collected = Arc::default();
    let v2 = v.clone();
    (v, move |o| v2.lock().expect("lock").push(o))
}

/// A replay config whose target is a local port nobody listens on, with short back-offs.
pub fn dead_target() -> mrte_replay::engine::ReplayConfig {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = mrte_replay::engine::ReplayConfig::new(
        mrte_replay::target::TargetDsn::parse_no_env(&format!("mysql://root@127.0.0.1:{port}"))
            .expect("dsn"),
    );
    cfg.backoff_min = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(40);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg
}

/// Pushes `SELECT 1` to each of `sessions` every 20 ms, numbering commands on.
pub struct SelectPump {
    sessions: u64,
    seq: u64,
}

impl SelectPump {
    /// Sessions `0..sessions`, first command number `seq`.
    pub fn new(sessions: u64, seq: u64) -> Self {
        Self { sessions, seq }
    }

    /// Push for `d` of wall time.
    pub fn run_for(&mut self, sink: &mut mrte_capture::ring::RingSink, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            for s in 0..self.sessions {
                mrte_capture::event::EventSink::push(sink, s, query(self.seq, "SELECT 1"));
            }
            self.seq += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What a kill-and-restart run saw.
pub struct Outage {
    pub stats: mrte_replay::engine::EngineStats,
    /// Each outcome's time and whether the test server answered it.
    pub times: Vec<(Instant, bool)>,
    pub killed: Instant,
    pub back: Instant,
}

/// Replays `sessions` root sessions onto `db` (connect timeout 2 s): `setup` pushes commands
/// after each login, then `SelectPump` runs from command `seq` for 1 s, the server is killed
/// for `down`, restarted, and the pump runs 2 s more before every session closes.
pub async fn kill_and_restart(
    db: &mut MariaDb,
    sessions: u64,
    port_base: u16,
    seq: u64,
    down: Duration,
    setup: impl FnOnce(&mut mrte_capture::ring::RingSink),
) -> Outage {
    use mrte_capture::event::EventSink;
    let mut cfg = mrte_replay::engine::ReplayConfig::new(
        mrte_replay::target::TargetDsn::parse_no_env(&db.dsn(None)).expect("dsn"),
    );
    cfg.connect_timeout = Duration::from_secs(2);
    let times: Arc<std::sync::Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let t2 = times.clone();
    let (mut sink, rx) = mrte_capture::ring::RingSink::new(4096);
    let run = tokio::spawn(mrte_replay::engine::Engine::new(cfg).run(
        rx,
        move |o| {
            t2.lock()
                .expect("lock")
                .push((Instant::now(), o.test.is_some()))
        },
        std::future::pending(),
    ));
    for s in 0..sessions {
        sink.push(s, open(s, port_base + s as u16));
        sink.push(s, login("root", None));
    }
    setup(&mut sink);
    let mut pump = SelectPump::new(sessions, seq);
    pump.run_for(&mut sink, Duration::from_secs(1));
    let killed = Instant::now();
    db.kill();
    pump.run_for(&mut sink, down);
    db.restart();
    let back = Instant::now();
    pump.run_for(&mut sink, Duration::from_secs(2));
    for s in 0..sessions {
        sink.push(s, close(CloseReason::Fin));
    }
    drop(sink);
    let stats = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("engine finished")
        .expect("engine task");
    let times = times.lock().expect("lock").clone();
    Outage {
        stats,
        times,
        killed,
        back,
    }
}

/// Feed all `events` (session id, event) through a RingSink and replay them to the end.
pub async fn replay_all(
    cfg: mrte_replay::engine::ReplayConfig,
    events: Vec<(u64, mrte_capture::event::SessionEvent)>,
) -> (mrte_replay::engine::EngineStats, Vec<mrte_replay::Outcome>) {
    use mrte_capture::event::EventSink;
    let (mut sink, rx) = mrte_capture::ring::RingSink::new(1024);
    for (id, ev) in events {
        sink.push(id, ev);
    }
    sink.close_all();
    drop(sink);
    let (got, collect) = collector();
    let stats = mrte_replay::engine::Engine::new(cfg)
        .run(rx, collect, std::future::pending())
        .await;
    let outcomes = got.lock().expect("lock").clone();
    assert_eq!(
        stats.accounted(),
        stats.commands_seen,
        "every command accounted: {stats:#?}"
    );
    (stats, outcomes)
}

/// `ev` (a command) with prod's commit marks: `order` > 0 makes it prod's commit number
/// `order`; `wm` is the number of prod commits completed before it.
pub fn committing(mut ev: SessionEvent, order: u64, wm: u64) -> SessionEvent {
    if let SessionEvent::Command(c) = &mut ev {
        c.commit = mrte_capture::commit::CommitMarks {
            end: (order > 0).then_some(mrte_capture::commit::TrxEnd::Commit),
            order,
            before_request: wm,
            before_response: wm,
        };
    }
    ev
}
