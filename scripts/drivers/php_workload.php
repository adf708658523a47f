<?php
// PHP 8 (mysqlnd) workload for record-fixtures.sh: PDO with emulated prepares (the default: text
// queries with client-side escaping) and with server-side prepares; mysqli prepared statements
// with a read-only cursor (COM_STMT_FETCH), long data, multi_query, select_db, change_user, ping,
// transactions and a statement that fails on prod.
// Usage: php php_workload.php HOST PORT USER PASS (run behind tapproxy.py, which counts commands)
[$_, $host, $port, $user, $pass] = $argv;
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

// PDO, emulated prepares.
$pdo = new PDO("mysql:host=$host;port=$port;dbname=drv_php;charset=utf8mb4", $user, $pass,
    [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$ins = $pdo->prepare('INSERT INTO posts (id, title, body, views, posted, rating) VALUES (?, ?, ?, ?, ?, ?)');
for ($i = 1; $i <= 15; $i++) {
    $ins->execute([$i, "post $i — 글 $i", str_repeat("body $i ", $i), $i * 3, sprintf('2026-06-%02d 07:08:09', $i), $i / 8]);
}
$sel = $pdo->prepare('SELECT id, title, views FROM posts WHERE views > :v ORDER BY id');
$sel->execute([':v' => 20]);
$sel->fetchAll();
$pdo->beginTransaction();
$pdo->exec("UPDATE posts SET views = 0");
$pdo->rollBack();
$pdo->beginTransaction();
$pdo->exec("UPDATE posts SET views = views + 1 WHERE id <= 5");
$pdo->commit();
try { $pdo->exec("INSERT INTO posts (id, title) VALUES (1, 'dup')"); } catch (PDOException $e) { }
$pdo = null;

// PDO, server-side prepares.
$pdo = new PDO("mysql:host=$host;port=$port;dbname=drv_php;charset=utf8mb4", $user, $pass,
    [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_EMULATE_PREPARES => false]);
$upd = $pdo->prepare('UPDATE posts SET rating = rating * ? WHERE id = ?');
for ($i = 1; $i <= 6; $i++) { $upd->execute([1.5, $i]); }
$one = $pdo->prepare('SELECT id, title, body, posted, rating FROM posts WHERE id = ?');
foreach ([2, 4, 6] as $id) { $one->execute([$id]); $one->fetchAll(); }
$upd = null; $one = null; $pdo = null;

// mysqli: a read-only cursor fetched a few rows at a time, long data, multi_query.
$m = new mysqli($host, $user, $pass, 'drv_php', (int)$port);
$m->set_charset('utf8mb4');
$st = $m->prepare('SELECT id, title, views FROM posts WHERE id >= ? ORDER BY id');
$st->attr_set(MYSQLI_STMT_ATTR_CURSOR_TYPE, MYSQLI_CURSOR_TYPE_READ_ONLY);
$from = 3;
$st->bind_param('i', $from);
$st->execute();
$st->bind_result($id, $title, $views);
while ($st->fetch()) { }
$st->close();
$lob = $m->prepare('UPDATE posts SET body = ? WHERE id = ?');
$null = null; $pid = 7;
$lob->bind_param('bi', $null, $pid);
$lob->send_long_data(0, str_repeat('long data chunk ', 4000));
$lob->send_long_data(0, str_repeat('second chunk ', 3000));
$lob->execute();
$lob->close();
$m->multi_query("UPDATE posts SET views = views * 2 WHERE id > 10; SELECT COUNT(*) FROM posts; SELECT MAX(views) FROM posts");
do { if ($r = $m->store_result()) { $r->free(); } } while ($m->more_results() && $m->next_result());
$m->select_db('drv_php_b');
$m->query("INSERT INTO tags (id, tag) VALUES (1, 'php'), (2, 'mysqlnd')");
$m->change_user($user, $pass, 'drv_php');
$m->query("UPDATE posts SET title = CONCAT(title, '*') WHERE id = 1");
$m->ping();
$m->close();
