// A second node mysql2 workload (same tap as mysql2_workload.js) for what the first leaves out:
// a pool of connections running `execute` concurrently (Promise.all), DATETIME / JSON / Buffer /
// DECIMAL / BIGINT / boolean / null parameters, a stored procedure called with `execute`,
// a streamed `query`, a statement that fails on prod, changeUser, transactions (commit and
// rollback), rowsAsArray.
// Usage: node mysql2_x_workload.js HOST USER PASS
'use strict';
const mysql = require('mysql2/promise');

const { sent } = require('./mysql2_workload.js'); // installs the socket tap

async function main() {
  const [host, user, password] = process.argv.slice(2);
  const opts = { host, port: Number(process.env.DB_PORT || 3306), user, password, database: 'drv_nodex',
    supportBigNumbers: true, bigNumberStrings: true, dateStrings: true };
  const pool = mysql.createPool({ ...opts, connectionLimit: 3 });
  const ins = 'INSERT INTO events (id, kind, at, payload, raw, amount, big, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';
  const jobs = [];
  for (let i = 1; i <= 30; i++) {
    jobs.push(pool.execute(ins, [i, `kind-${i % 4}`, `2026-05-${String(1 + (i % 28)).padStart(2, '0')} 10:11:12.${String(i).padStart(3, '0')}`,
      JSON.stringify({ i, tags: ['x', 'ü'] }), Buffer.from(Array.from({ length: 40 + i }, (_, j) => (i * 11 + j) % 256)),
      (i * 1234.5678).toFixed(4), (18446744073709551000n - BigInt(i)).toString(), i % 2, ]));
  }
  await Promise.all(jobs);
  await Promise.all([1, 2, 3, 4, 5, 6].map((i) => pool.execute('UPDATE counters SET n = n + ? WHERE name = ?', [i, i % 2 ? 'hits' : 'misses'])));
  await Promise.all([3, 7, 11].map((i) => pool.execute('SELECT id, kind, at, payload, amount, big FROM events WHERE id >= ? ORDER BY id LIMIT 5', [i])));
  await pool.execute('INSERT INTO events (id, kind, at, payload, raw, amount, big, flag) VALUES (?, ?, NULL, NULL, NULL, NULL, NULL, NULL)', [99, 'nulls']);
  await pool.end();

  const c = await mysql.createConnection({ ...opts, multipleStatements: true });
  await c.query('CREATE PROCEDURE bump(IN who VARCHAR(32), IN by_n INT) BEGIN UPDATE counters SET n = n + by_n WHERE name = who; SELECT name, n FROM counters ORDER BY name; END');
  for (let i = 1; i <= 3; i++) await c.execute('CALL bump(?, ?)', ['hits', i]);
  await c.beginTransaction();
  await c.execute('UPDATE events SET kind = ? WHERE id < ?', ['rolled', 10]);
  await c.rollback();
  await c.beginTransaction();
  await c.execute('UPDATE events SET kind = ? WHERE id > ?', ['late', 25]);
  await c.commit();
  try {
    await c.execute(ins, [1, 'dup', null, null, null, null, null, null]);
  } catch (e) { if (e.code !== 'ER_DUP_ENTRY') throw e; }
  await c.query({ sql: 'SELECT id, kind FROM events ORDER BY id', rowsAsArray: true });
  await new Promise((resolve, reject) => {
    c.connection.query('SELECT id, raw FROM events ORDER BY id').stream()
      .on('data', () => {}).on('end', resolve).on('error', reject);
  });
  await c.changeUser({ user, password, database: 'drv_nodex' });
  await c.execute('DELETE FROM events WHERE flag = ?', [0]);
  await c.ping();
  await c.end();
  console.log(JSON.stringify(Object.fromEntries(Object.entries(sent).sort())));
}

main().catch((e) => { console.error(e); process.exit(1); });
