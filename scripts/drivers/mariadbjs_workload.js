// node `mariadb` (MariaDB's own connector) and `mysql` (mysqljs) workload for record-fixtures.sh.
// mariadb: commands pipelined by default (several written before any response is read),
// `batch` (COM_STMT_BULK_EXECUTE), `execute` (server-side prepared, cached), transactions,
// a pool; mysql: text protocol with client-side escaping, multipleStatements, changeUser.
// Usage: node mariadbjs_workload.js HOST USER PASS
// Prints, as JSON, the commands both drivers wrote on their sockets: each client packet with
// sequence number 0 (a command) counted by its first byte, from a tap on net.Socket.write.
'use strict';
const net = require('net');
const mariadb = require('mariadb');
const mysql = require('mysql');

const NAMES = { 0x01: 'COM_QUIT', 0x02: 'COM_INIT_DB', 0x03: 'COM_QUERY', 0x0e: 'COM_PING',
  0x11: 'COM_CHANGE_USER', 0x16: 'COM_STMT_PREPARE', 0x17: 'COM_STMT_EXECUTE',
  0x18: 'COM_STMT_SEND_LONG_DATA', 0x19: 'COM_STMT_CLOSE', 0x1a: 'COM_STMT_RESET',
  0x1f: 'COM_RESET_CONNECTION', 0xfa: 'COM_STMT_BULK_EXECUTE' };
const sent = {};
const port = Number(process.env.DB_PORT || 3306);

// A socket's writes may hold several packets or part of one: frame them per socket.
function tap(sock, chunk) {
  if (sock.remotePort !== port || !(chunk instanceof Uint8Array)) return;
  const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  let buf = sock.__tap ? Buffer.concat([sock.__tap, bytes]) : bytes;
  while (buf.length >= 4) {
    const len = buf.readUIntLE(0, 3);
    if (buf.length < 4 + len) break;
    if (buf[3] === 0 && len > 0) {
      const n = NAMES[buf[4]] || `COM_0x${buf[4].toString(16)}`;
      sent[n] = (sent[n] || 0) + 1;
    }
    buf = buf.subarray(4 + len);
  }
  sock.__tap = buf.length ? Buffer.from(buf) : null;
}
const write = net.Socket.prototype.write;
net.Socket.prototype.write = function (chunk, ...rest) {
  tap(this, chunk);
  return write.call(this, chunk, ...rest);
};
const end = net.Socket.prototype.end;
net.Socket.prototype.end = function (chunk, ...rest) {
  tap(this, chunk);
  return end.call(this, chunk, ...rest);
};

async function viaMariadb(host, user, password) {
  const opts = { host, port, user, password, database: 'drv_mdb', ssl: false };
  const c = await mariadb.createConnection(opts);
  // Not awaited one by one: the connector writes them back to back (pipelining).
  await Promise.all(Array.from({ length: 20 }, (_, i) => c.query(
    'INSERT INTO accounts (id, owner, balance, opened, doc) VALUES (?, ?, ?, ?, ?)',
    [i + 1, `owner-${i + 1} ✓`, (i * 100.25).toFixed(2), `2026-0${1 + (i % 9)}-15`, JSON.stringify({ i })])));
  await c.batch('INSERT INTO moves (account, delta, note) VALUES (?, ?, ?)',
    Array.from({ length: 30 }, (_, i) => [1 + (i % 20), (i - 15) * 1.5, `move ${i}`]));
  await Promise.all([1, 2, 3, 4, 5].map((i) => c.execute('UPDATE accounts SET balance = balance + ? WHERE id = ?', [i, i])));
  await Promise.all([6, 7, 8].map((i) => c.execute('SELECT id, owner, balance, opened, doc FROM accounts WHERE id = ?', [i])));
  await c.execute('UPDATE accounts SET pic = ? WHERE id = ?', [Buffer.alloc(3000, 7), 9]);
  await c.beginTransaction();
  await c.query('UPDATE accounts SET balance = 0');
  await c.rollback();
  await c.beginTransaction();
  await c.query('UPDATE accounts SET balance = balance - 1 WHERE id < 4');
  await c.commit();
  try { await c.query('INSERT INTO accounts (id, owner, balance) VALUES (1, ?, 0)', ['dup']); } catch (e) {
    if (e.errno !== 1062) throw e;
  }
  await c.query('SELECT a.id, SUM(m.delta) FROM accounts a JOIN moves m ON m.account = a.id GROUP BY a.id ORDER BY a.id');
  await c.ping();
  await c.end();

  const pool = mariadb.createPool({ ...opts, connectionLimit: 2 });
  await Promise.all([11, 12, 13, 14].map((i) => pool.query('UPDATE accounts SET owner = CONCAT(owner, ?) WHERE id = ?', ['!', i])));
  await pool.end();
}

function viaMysql(host, user, password) {
  return new Promise((resolve, reject) => {
    const c = mysql.createConnection({ host, port, user, password, database: 'drv_mdb', multipleStatements: true });
    const q = (sql, args) => new Promise((ok, ko) => c.query(sql, args, (e, r) => (e ? ko(e) : ok(r))));
    (async () => {
      for (let i = 0; i < 5; i++) await q('INSERT INTO moves (account, delta, note) VALUES (?, ?, ?)', [i + 1, i, `mysqljs ${i} 한글`]);
      await q('UPDATE accounts SET owner = ? WHERE id IN (?)', ['bulk', [15, 16, 17]]);
      await q('SELECT COUNT(*) AS n FROM moves; SELECT MAX(id) AS m FROM accounts');
      await new Promise((ok, ko) => c.changeUser({ user, password, database: 'drv_mdb' }, (e) => (e ? ko(e) : ok())));
      await q('DELETE FROM moves WHERE note LIKE ?', ['move 2%']);
      await new Promise((ok, ko) => c.ping((e) => (e ? ko(e) : ok())));
      c.end((e) => (e ? reject(e) : resolve()));
    })().catch(reject);
  });
}

async function main() {
  const [host, user, password] = process.argv.slice(2);
  await viaMariadb(host, user, password);
  await viaMysql(host, user, password);
  console.log(JSON.stringify(Object.fromEntries(Object.entries(sent).sort())));
}

main().catch((e) => { console.error(e); process.exit(1); });
