//! The planning rules: how one captured command becomes actions (skip rules, payload rewrites,
//! statement id resolution, re-PREPARE), for [`super::Planner`].

use std::sync::Arc;

use bytes::Bytes;
use mrte_capture::event::{command_name, Command, CommandRecord, ResponseStatus};
use mrte_capture::fingerprint::fingerprint_id;
use mrte_capture::mysql::consts::has_no_response;

use super::*;
use crate::classify::{classify_command_code, StatementClass};

impl Planner {
    fn sql_facts(&mut self, sql: &[u8]) -> SqlFacts {
        let mut memo = sql.len() <= MEMO_MAX_LEN && self.memo_use.take();
        // The memo's key: the statement's shape (its numbers folded, see `shape`), or its
        // exact text while a regex filter may look at the numbers.
        let mut key = std::mem::take(&mut self.memo_key);
        if memo {
            if !(self.memo_by_shape && shape::shape_key(sql, &mut key)) {
                key.clear();
                key.extend_from_slice(sql);
            }
            if let Some(f) = self.memo.get(key.as_slice()) {
                self.memo_use.hit();
                let f = f.clone();
                self.memo_key = key;
                return f;
            }
            if self.memo_use.judge() {
                self.memo.clear();
                memo = false;
            }
        }
        let fp = self.fp.fingerprint(sql);
        let (fingerprint, fingerprint_id) = match self.fps.get(fp) {
            Some((text, id)) => (text.clone(), *id),
            None => {
                if self.fps.len() >= MEMO_MAX {
                    self.fps.clear();
                }
                let text: Arc<str> = Arc::from(fp);
                let id = fingerprint_id(fp);
                self.fps.insert(fp.into(), (text.clone(), id));
                (text, id)
            }
        };
        let facts = SqlFacts {
            skip: self.cfg.filters.check_sql(sql),
            fingerprint_id,
            fingerprint,
            clock: clock::reads_clock(sql),
            inserts: clock::inserts(sql),
        };
        if memo {
            if self.memo.len() >= MEMO_MAX {
                self.memo.clear();
            }
            self.memo.insert(key.as_slice().into(), facts.clone());
        }
        self.memo_key = key;
        facts
    }

    /// The example of `sql`, a slice of `raw` where it is one (no copy), else copied.
    fn example(&self, raw: &Bytes, sql: &[u8]) -> crate::ExampleText {
        let cut = &sql[..sql.len().min(self.cfg.example_len)];
        let (r, c) = (raw.as_ptr_range(), cut.as_ptr_range());
        let bytes = if !cut.is_empty() && r.start <= c.start && c.end <= r.end {
            raw.slice_ref(cut)
        } else {
            Bytes::copy_from_slice(cut)
        };
        crate::ExampleText::sql(bytes, self.cfg.example_len)
    }

    /// Plan one command; `Err` gives it back when it must wait for an answer.
    /// The decoder's view of the session's user and database when the command was sent.
    pub(super) fn absorb_identity(&mut self, rec: &CommandRecord) {
        if let Some(u) = &rec.user {
            if self.user.as_deref() != Some(&**u) {
                self.user = Some(u.to_string());
            }
        }
        if let Some(d) = &rec.db {
            if self.db.as_deref() != Some(&**d) {
                self.db = Some(d.to_string());
            }
        }
    }

    pub(super) fn plan(&mut self, q: Queued) -> Result<(), Queued> {
        self.absorb_identity(&q.rec);
        self.facts = None;
        let rec = &q.rec;
        let code = rec.command.code();
        let caps = self.capabilities.unwrap_or(0);
        let skip = self.skip_all.or_else(|| self.skip_rule(rec, code));
        if let Some(reason) = skip {
            self.register_skipped_prepare(rec, reason);
            self.done(&q.rec);
            self.out.push_back(Action::Skip {
                seq: q.rec.seq,
                code,
                reason,
            });
            return Ok(());
        }
        let captured = match payload::captured(rec, caps) {
            Ok(c) => c,
            Err(reason) => {
                self.lose(&q.rec, None, reason);
                return Ok(());
            }
        };
        match code {
            com::STMT_PREPARE => {
                self.plan_prepare(&q.rec, captured.payload);
                Ok(())
            }
            com::STMT_EXECUTE
            | com::STMT_SEND_LONG_DATA
            | com::STMT_CLOSE
            | com::STMT_RESET
            | com::STMT_FETCH
            | com::STMT_BULK_EXECUTE => self.plan_stmt(q, captured.payload),
            com::CHANGE_USER => {
                self.plan_change_user(&q.rec);
                Ok(())
            }
            _ => {
                self.plan_plain(&q.rec, code, captured);
                Ok(())
            }
        }
    }

    /// Skip rules that need no statement look-up.
    fn skip_rule(&mut self, rec: &CommandRecord, code: u8) -> Option<SkipReason> {
        if rec.flags.too_large {
            return Some(SkipReason::TooLarge);
        }
        if matches!(rec.command, Command::Unknown { .. }) {
            return Some(SkipReason::UnknownCommand);
        }
        let f = &self.cfg.filters;
        if !matches!(code, com::QUIT | com::INIT_DB | com::STMT_CLOSE) {
            if let Some(r) = f.check_identity(self.db.as_deref(), self.user.as_deref()) {
                return Some(r);
            }
        }
        match code {
            com::QUERY | com::STMT_PREPARE => {
                let facts = self.sql_facts(rec.command.sql().unwrap_or_default());
                let skip = facts.skip;
                self.facts = Some(facts);
                skip
            }
            com::INIT_DB => {
                let schema = match &rec.command {
                    Command::InitDb { schema } => Some(schema.as_str()),
                    _ => None,
                };
                f.check_identity(schema, self.user.as_deref())
            }
            com::QUIT if !self.connected => Some(SkipReason::NothingToSend),
            com::BINLOG_DUMP | com::BINLOG_DUMP_GTID | com::REGISTER_SLAVE => {
                Some(SkipReason::Replication)
            }
            com::SHUTDOWN | com::PROCESS_KILL => Some(
                f.check_class(StatementClass::Dangerous)
                    .unwrap_or(SkipReason::Unsupported),
            ),
            com::CREATE_DB | com::DROP_DB => f.check_class(StatementClass::Write),
            c if command_name(c) == "COM_UNKNOWN" => Some(SkipReason::UnknownCommand),
            c => classify_command_code(c).and_then(|k| f.check_class(k)),
        }
    }

    /// A skipped PREPARE still names its statement: its EXECUTEs are skipped for its reason.
    fn register_skipped_prepare(&mut self, rec: &CommandRecord, reason: SkipReason) {
        if rec.command.code() != com::STMT_PREPARE {
            return;
        }
        let prod_id = rec.response.prepare_ok.as_ref().map(|p| p.stmt_id);
        self.last_prepare = Some(LastPrepare {
            seq: rec.seq,
            prod_id,
            skip: Some(reason),
        });
        if let Some(id) = prod_id {
            let sql = rec.command.sql().unwrap_or_default();
            let facts = self.sql_facts(sql);
            let example = self.example(&rec.raw, sql);
            self.next_gen += 1;
            self.stmts.insert(
                id,
                Stmt {
                    sql: Bytes::copy_from_slice(sql),
                    fingerprint: facts.fingerprint,
                    fingerprint_id: facts.fingerprint_id,
                    example,
                    skip: Some(reason),
                    clock: facts.clock,
                    inserts: facts.inserts,
                    test: TestStmt::Absent,
                    gen: self.next_gen,
                },
            );
        }
    }

    /// Lose a captured command for `reason`.
    fn lose(&mut self, rec: &CommandRecord, stmt: Option<u32>, reason: LoseReason) {
        let cmd = self.info(rec, stmt);
        self.done(rec);
        self.out.push_back(Action::Lose { cmd, reason });
    }

    /// Bookkeeping once a captured command is planned and not sent (skipped, lost) or sent
    /// by other means than [`Self::send`].
    fn done(&mut self, rec: &CommandRecord) {
        self.trx
            .observe(rec.seq, rec.command.code(), None, false, &rec.response);
        self.mark_end(rec);
    }

    fn mark_end(&mut self, rec: &CommandRecord) {
        if let Some(end) = rec.response.last_byte_us {
            self.prev_response_end = Some(self.prev_response_end.map_or(end, |e| e.max(end)));
        }
    }

    pub(super) fn pipelined(&self, rec: &CommandRecord) -> bool {
        self.prev_response_end.is_some_and(|end| rec.ts_us < end)
    }

    /// The executor's view of a captured command; `stmt` gives statement commands the
    /// PREPARE's fingerprint.
    fn info(&mut self, rec: &CommandRecord, stmt: Option<u32>) -> Box<CmdInfo> {
        let (fingerprint, fingerprint_id, example) = match rec.command.sql() {
            Some(sql) if rec.command.code() == com::QUERY => {
                let f = match self.facts.take() {
                    Some(f) => f,
                    None => self.sql_facts(sql),
                };
                (f.fingerprint, f.fingerprint_id, self.example(&rec.raw, sql))
            }
            Some(sql) => {
                let name = "COM_STMT_PREPARE";
                (
                    Arc::from(name),
                    fingerprint_id(name),
                    self.example(&rec.raw, sql),
                )
            }
            None => match stmt.and_then(|id| self.stmts.get(&id)) {
                Some(s) => (s.fingerprint.clone(), s.fingerprint_id, s.example.clone()),
                None => {
                    let name = rec.command.name();
                    (Arc::from(name), fingerprint_id(name), name.into())
                }
            },
        };
        Box::new(CmdInfo {
            seq: rec.seq,
            ts_us: rec.ts_us,
            code: rec.command.code(),
            fingerprint,
            fingerprint_id,
            example,
            prod: rec.response.clone(),
            prod_us: rec.prod_us(),
            after_gap: rec.flags.after_gap,
        })
    }

    fn send(
        &mut self,
        rec: &CommandRecord,
        payload: Bytes,
        stmt: Option<u32>,
        infile: Option<Bytes>,
    ) {
        let code = rec.command.code();
        let (clock, inserts) = match code {
            com::QUERY if self.cfg.prod_clock || self.cfg.prod_insert_id => {
                if self.facts.is_none() {
                    let sql = rec.command.sql().unwrap_or_default();
                    self.facts = Some(self.sql_facts(sql));
                }
                self.facts
                    .as_ref()
                    .map_or((false, false), |f| (f.clock, f.inserts))
            }
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => stmt
                .and_then(|id| self.stmts.get(&id))
                .map_or((false, false), |s| (s.clock, s.inserts)),
            _ => (false, false),
        };
        if matches!(
            code,
            com::QUERY | com::STMT_EXECUTE | com::STMT_BULK_EXECUTE
        ) {
            self.clock_before(rec, clock, inserts);
        }
        let expects_response = !has_no_response(code);
        if expects_response {
            self.outstanding.push_back(Outstanding::Other);
        }
        let origin = Origin::Captured(self.info(rec, stmt));
        let pipelined = self.pipelined(rec);
        self.trx.observe(
            rec.seq,
            code,
            Some(&payload),
            rec.response.local_infile,
            &rec.response,
        );
        self.mark_end(rec);
        self.out.push_back(Action::Send(SendPlan {
            payload,
            expects_response,
            pipelined,
            local_infile: infile,
            origin,
        }));
    }

    fn plan_plain(&mut self, rec: &CommandRecord, code: u8, captured: payload::Captured) {
        let ids = &self.cfg.identities;
        let mut payload = captured.payload;
        match code {
            com::INIT_DB => {
                if let Some(p) = rewrite::map_init_db(&payload, &ids.dbs) {
                    payload = p;
                }
            }
            com::QUERY => {
                if let Some(p) = rewrite::map_use(
                    &payload,
                    query_sql_at(&payload, self.capabilities),
                    &ids.dbs,
                ) {
                    payload = p;
                }
            }
            _ => {}
        }
        let infile = rec
            .response
            .local_infile
            .then_some(captured.local_infile)
            .flatten();
        self.ensure_connected();
        self.send(rec, payload, None, infile);
        match code {
            com::QUIT => {
                self.out.push_back(Action::Disconnect);
                self.drop_connection();
            }
            com::RESET_CONNECTION if rec.response.status != ResponseStatus::Err => {
                self.forget_statements()
            }
            com::INIT_DB if rec.response.status != ResponseStatus::Err => {
                if let Command::InitDb { schema } = &rec.command {
                    self.db = Some(schema.clone());
                }
            }
            _ => {}
        }
    }

    fn plan_change_user(&mut self, rec: &CommandRecord) {
        let Command::ChangeUser { user, db, .. } = &rec.command else {
            self.lose(rec, None, LoseReason::PayloadUnavailable);
            return;
        };
        let (tu, tp) = self.credentials(Some(user));
        let tdb = db
            .as_deref()
            .map(|d| self.cfg.identities.map_db(d).to_owned());
        self.ensure_connected();
        let cmd = self.info(rec, None);
        self.done(rec);
        self.out.push_back(Action::ChangeUser(ChangeUserPlan {
            user: tu,
            password: tp,
            db: tdb,
            cmd,
        }));
        if rec.response.status != ResponseStatus::Err {
            self.user = Some(user.clone());
            self.db = db.clone();
        }
        // The test connection's statements are gone whatever the answer.
        self.forget_statements();
    }

    /// Both sides dropped every prepared statement (RESET_CONNECTION, CHANGE_USER). The test ids
    /// are kept as closed ones: a client that still closes or runs one (mysql2 closes its cache
    /// after a change of user) gets the test server's own no-op or error, as prod did.
    fn forget_statements(&mut self) {
        for (prod_id, s) in self.stmts.drain() {
            if let (TestStmt::Known(t), true) = (s.test, self.closed.len() < CLOSED_MAX) {
                self.closed.insert(prod_id, t);
            }
        }
        self.last_prepare = None;
        self.test_last_prepare = None;
        self.epoch += 1;
    }

    fn plan_prepare(&mut self, rec: &CommandRecord, payload: Bytes) {
        let prod_id = rec.response.prepare_ok.as_ref().map(|p| p.stmt_id);
        let sql = Bytes::copy_from_slice(rec.command.sql().unwrap_or_default());
        let facts = match self.facts.take() {
            Some(f) => f,
            None => self.sql_facts(&sql),
        };
        let example = self.example(&sql, &sql);
        self.ensure_connected();
        if let Some(id) = prod_id {
            if let Some(TestStmt::Known(old)) = self.stmts.get(&id).map(|s| s.test) {
                self.out.push_back(close_orphan(old));
            }
            self.next_gen += 1;
            self.stmts.insert(
                id,
                Stmt {
                    sql,
                    fingerprint: facts.fingerprint,
                    fingerprint_id: facts.fingerprint_id,
                    example,
                    skip: None,
                    clock: facts.clock,
                    inserts: facts.inserts,
                    test: TestStmt::Pending,
                    gen: self.next_gen,
                },
            );
        }
        self.last_prepare = Some(LastPrepare {
            seq: rec.seq,
            prod_id,
            skip: None,
        });
        self.test_last_prepare = Some(rec.seq);
        self.send(rec, payload, None, None);
        // `send` queued an Other; make it this PREPARE's.
        if let Some(o) = self.outstanding.back_mut() {
            *o = Outstanding::Prepare {
                prod_id,
                gen: self.next_gen,
                epoch: self.epoch,
            };
        }
    }

    fn resolve(&self, prod_id: u32) -> Resolved {
        let prod_id = if prod_id == LAST_PREPARED {
            match self.last_prepare {
                None => return Resolved::Lose(LoseReason::UnknownStatement),
                Some(p) => {
                    if let Some(r) = p.skip {
                        return Resolved::Skip(r);
                    }
                    if self.connected && self.test_last_prepare == Some(p.seq) {
                        return Resolved::Id(LAST_PREPARED);
                    }
                    match p.prod_id {
                        Some(id) => id,
                        None => return Resolved::Lose(LoseReason::UnknownStatement),
                    }
                }
            }
        } else {
            prod_id
        };
        let Some(s) = self.stmts.get(&prod_id) else {
            return match self.closed.get(&prod_id) {
                Some(&t) if self.connected => Resolved::Id(t),
                _ => Resolved::Lose(LoseReason::UnknownStatement),
            };
        };
        if let Some(r) = s.skip {
            return Resolved::Skip(r);
        }
        match s.test {
            TestStmt::Known(t) if self.connected => Resolved::Id(t),
            TestStmt::Pending if self.connected && !self.outstanding.is_empty() => Resolved::Wait,
            _ => Resolved::Reprepare(prod_id),
        }
    }

    fn plan_stmt(&mut self, mut q: Queued, payload: Bytes) -> Result<(), Queued> {
        let code = q.rec.command.code();
        let Some(prod_id) = rewrite::stmt_id(&payload) else {
            self.lose(&q.rec, None, LoseReason::PayloadUnavailable);
            return Ok(());
        };
        let resolved = self.resolve(prod_id);
        let stmt_key = if prod_id == LAST_PREPARED {
            self.last_prepare.and_then(|p| p.prod_id)
        } else {
            Some(prod_id)
        };
        match resolved {
            Resolved::Wait => Err(q),
            Resolved::Skip(reason) => {
                if code == com::STMT_CLOSE {
                    if let Some(k) = stmt_key {
                        self.stmts.remove(&k);
                    }
                }
                self.done(&q.rec);
                self.out.push_back(Action::Skip {
                    seq: q.rec.seq,
                    code,
                    reason,
                });
                Ok(())
            }
            Resolved::Lose(reason) => {
                self.lose(&q.rec, None, reason);
                Ok(())
            }
            Resolved::Reprepare(_) if code == com::STMT_CLOSE => {
                if let Some(k) = stmt_key {
                    self.stmts.remove(&k);
                }
                self.done(&q.rec);
                self.out.push_back(Action::Skip {
                    seq: q.rec.seq,
                    code,
                    reason: SkipReason::NothingToSend,
                });
                Ok(())
            }
            Resolved::Reprepare(id) if q.reprepared => {
                self.lose(&q.rec, Some(id), LoseReason::PrepareFailed);
                Ok(())
            }
            Resolved::Reprepare(id) => {
                self.ensure_connected();
                let pipelined = self.pipelined(&q.rec);
                let Some(s) = self.stmts.get_mut(&id) else {
                    self.lose(&q.rec, None, LoseReason::UnknownStatement);
                    return Ok(());
                };
                s.test = TestStmt::Pending;
                let mut p = Vec::with_capacity(1 + s.sql.len());
                p.push(com::STMT_PREPARE);
                p.extend_from_slice(&s.sql);
                let gen = s.gen;
                self.outstanding.push_back(Outstanding::Prepare {
                    prod_id: Some(id),
                    gen,
                    epoch: self.epoch,
                });
                self.test_last_prepare = None;
                self.out.push_back(Action::Send(SendPlan {
                    payload: Bytes::from(p),
                    expects_response: true,
                    pipelined,
                    local_infile: None,
                    origin: Origin::Synthetic(Synthetic::Reprepare { for_seq: q.rec.seq }),
                }));
                q.reprepared = true;
                Err(q)
            }
            Resolved::Id(test_id) => {
                let Some(payload) = rewrite::with_stmt_id(&payload, test_id) else {
                    self.lose(&q.rec, None, LoseReason::PayloadUnavailable);
                    return Ok(());
                };
                let rec = q.rec;
                self.send(&rec, payload, stmt_key, None);
                if code == com::STMT_CLOSE {
                    if let Some(k) = stmt_key {
                        if let Some(TestStmt::Known(t)) = self.stmts.remove(&k).map(|s| s.test) {
                            if self.closed.len() >= CLOSED_MAX {
                                self.closed.clear();
                            }
                            self.closed.insert(k, t);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Where the SQL text starts in a COM_QUERY payload (after query attributes, if negotiated).
fn query_sql_at(payload: &[u8], caps: Option<u32>) -> usize {
    if caps.unwrap_or(0) & QUERY_ATTRIBUTES == 0 {
        return 1;
    }
    // With attributes the text is what follows the attribute block.
    attr_block_end(payload).unwrap_or(payload.len())
}

/// End of the query-attribute block of a COM_QUERY payload.
fn attr_block_end(payload: &[u8]) -> Option<usize> {
    use mrte_capture::mysql::value::{read_value, Reader};
    let mut r = Reader::new(payload.get(1..)?);
    let n = r.lenenc_int("count").ok()?;
    r.lenenc_int("sets").ok()?;
    if n > 0 {
        let n = usize::try_from(n).ok().filter(|&n| n <= payload.len())?;
        let bitmap = r.take(n.div_ceil(8), "bitmap").ok()?.to_vec();
        if r.u8("bound").ok()? != 1 {
            return None;
        }
        let mut meta = Vec::with_capacity(n);
        for _ in 0..n {
            let ty = r.u8("type").ok()?;
            let fl = r.u8("flags").ok()?;
            r.lenenc_bytes("name").ok()?;
            meta.push((ty, fl & 0x80 != 0));
        }
        for (i, (ty, unsigned)) in meta.into_iter().enumerate() {
            if bitmap[i / 8] & (1 << (i % 8)) == 0 {
                read_value(&mut r, ty, unsigned).ok()?;
            }
        }
    }
    Some(payload.len() - r.remaining())
}

pub(super) fn close_orphan(test_id: u32) -> Action {
    let mut p = vec![com::STMT_CLOSE];
    p.extend_from_slice(&test_id.to_le_bytes());
    Action::Send(SendPlan {
        payload: Bytes::from(p),
        expects_response: false,
        pipelined: true,
        local_infile: None,
        origin: Origin::Synthetic(Synthetic::CloseOrphan),
    })
}
