// node mysql2 workload for record-fixtures.sh: `execute` (server-side prepared, statement cache),
// `query` with multipleStatements, client-side formatted `query`, `unprepare`.
// Usage: node mysql2_workload.js HOST USER PASS
// Prints, as JSON, the commands mysql2 wrote on its socket: each packet with sequence number 0 (a
// command) counted by its first byte.
'use strict';
const mysql = require('mysql2/promise');

const NAMES = { 0x01: 'COM_QUIT', 0x03: 'COM_QUERY', 0x0e: 'COM_PING', 0x11: 'COM_CHANGE_USER', 0x16: 'COM_STMT_PREPARE',
  0x17: 'COM_STMT_EXECUTE', 0x19: 'COM_STMT_CLOSE', 0x1a: 'COM_STMT_RESET' };
const sent = {};

// Every packet goes through BaseConnection.prototype.write (the tap is in place before connecting).
const Base = require(require.resolve('mysql2').replace(/index\.js$/, 'lib/base/connection.js'));
const write = Base.prototype.write;
Base.prototype.write = function (buf) {
  if (buf.length > 4 && buf[3] === 0) {
    const n = NAMES[buf[4]] || `COM_0x${buf[4].toString(16)}`;
    sent[n] = (sent[n] || 0) + 1;
  }
  return write.call(this, buf);
};

async function main() {
  const [host, user, password] = process.argv.slice(2);
  const c = await mysql.createConnection({ host, port: Number(process.env.DB_PORT || 3306), user, password, database: 'drv_node',
    multipleStatements: true });
  for (let i = 1; i <= 20; i++) {
    await c.execute('INSERT INTO notes (id, body, score) VALUES (?, ?, ?)', [i, `note ${i}`, i * 1.5]);
  }
  for (let i = 1; i <= 10; i++) {
    await c.execute('SELECT id, body, score FROM notes WHERE id = ?', [i]);
  }
  await c.execute('UPDATE notes SET score = score * ? WHERE id < ?', [2, 5]);
  await c.query("UPDATE notes SET body = CONCAT(body, '!') WHERE id = 1; SELECT COUNT(*) FROM notes; " +
    "INSERT INTO notes (id, body, score) VALUES (100, 'multi', 0)");
  await c.query('SELECT id, body FROM notes WHERE id > ? ORDER BY id', [10]);
  await c.query("DELETE FROM notes WHERE id = 3; UPDATE notes SET score = 0 WHERE id = 4");
  c.unprepare('SELECT id, body, score FROM notes WHERE id = ?');
  await c.ping();
  await c.end();
  console.log(JSON.stringify(Object.fromEntries(Object.entries(sent).sort())));
}

module.exports = { sent };
if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
