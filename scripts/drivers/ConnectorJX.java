// A second Connector/J workload (same tap as ConnectorJ.java, compiled with it), for what
// ConnectorJ.java leaves out: a stored procedure created and called through a server-side
// prepared CallableStatement (OUT parameters: PS multi-results), generated keys, a transaction
// rolled back then committed, DECIMAL / DATETIME(6) / DATE / DOUBLE / JSON / NULL / utf8mb4
// parameters, a streamed result (fetch size), a 1 MiB stream parameter, rewriteBatchedStatements
// and allowMultiQueries with a text batch, setCatalog (COM_INIT_DB), isValid (COM_PING), and a
// compressed connection running the same prepared statements.
// Run: java -cp DIR:/usr/share/java/mariadb-java-client.jar ConnectorJX HOST USER PASS
import java.io.ByteArrayInputStream;
import java.math.BigDecimal;
import java.sql.*;
import java.util.Map;

public class ConnectorJX {
    static void drain(Statement s, boolean hasResult) throws SQLException {
        while (true) {
            if (hasResult) {
                try (ResultSet rs = s.getResultSet()) { while (rs.next()) { } }
            } else if (s.getUpdateCount() == -1) {
                return;
            }
            hasResult = s.getMoreResults();
        }
    }

    static void query(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) { drain(s, s.execute(sql)); }
    }

    static void orders(Connection c, int from, int to, String who) throws SQLException {
        try (PreparedStatement ins = c.prepareStatement(
                "INSERT INTO orders (customer, amount, placed, due, ratio, meta, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                Statement.RETURN_GENERATED_KEYS)) {
            for (int i = from; i <= to; i++) {
                ins.setString(1, who + "-" + i);
                ins.setBigDecimal(2, new BigDecimal(i * 12345).movePointLeft(2));
                ins.setTimestamp(3, Timestamp.valueOf("2026-03-0" + (1 + i % 9) + " 12:34:56.654321"));
                if (i % 4 == 0) ins.setNull(4, Types.DATE); else ins.setDate(4, Date.valueOf("2026-12-" + (10 + i % 18)));
                ins.setDouble(5, i / 7.0);
                ins.setString(6, "{\"i\": " + i + ", \"tags\": [\"a\", \"b\"]}");
                if (i % 3 == 0) ins.setNull(7, Types.VARCHAR); else ins.setString(7, "note ✓ " + i);
                ins.executeUpdate();
                try (ResultSet k = ins.getGeneratedKeys()) { while (k.next()) { } }
            }
        }
    }

    public static void main(String[] a) throws Exception {
        String host = a[0], user = a[1], pass = a[2];
        String port = System.getenv().getOrDefault("DB_PORT", "3306");
        String base = "jdbc:mariadb://" + host + ":" + port
            + "/drv_cjx?useServerPrepStmts=true&socketFactory=ConnectorJ$TapFactory";

        try (Connection c = DriverManager.getConnection(base, user, pass)) {
            orders(c, 1, 12, "alice");
            query(c, "CREATE PROCEDURE add_order(IN who VARCHAR(64), IN amt DECIMAL(12,2), OUT new_id INT, OUT total DECIMAL(14,2)) "
                + "BEGIN INSERT INTO orders (customer, amount, placed) VALUES (who, amt, '2026-01-01 10:00:00.123456'); "
                + "SET new_id = LAST_INSERT_ID(); SELECT SUM(amount) INTO total FROM orders; "
                + "SELECT id, customer FROM orders WHERE id = new_id; END");
            try (CallableStatement call = c.prepareCall("{call add_order(?, ?, ?, ?)}")) {
                for (int i = 0; i < 4; i++) {
                    call.setString(1, "proc-" + i);
                    call.setBigDecimal(2, new BigDecimal("10.25").add(BigDecimal.valueOf(i)));
                    call.registerOutParameter(3, Types.INTEGER);
                    call.registerOutParameter(4, Types.DECIMAL);
                    drain(call, call.execute());
                    call.getInt(3);
                    call.getBigDecimal(4);
                }
            }

            // A transaction rolled back, then one committed.
            c.setAutoCommit(false);
            orders(c, 100, 104, "rolled-back");
            c.rollback();
            orders(c, 200, 204, "committed");
            try (PreparedStatement upd = c.prepareStatement("UPDATE orders SET amount = amount * ? WHERE customer LIKE ?")) {
                upd.setBigDecimal(1, new BigDecimal("1.10"));
                upd.setString(2, "committed-%");
                upd.executeUpdate();
            }
            c.commit();
            c.setAutoCommit(true);

            // A streamed result: rows read as they come.
            try (PreparedStatement sel = c.prepareStatement("SELECT id, customer, amount, placed, due, ratio, meta, note FROM orders WHERE id > ? ORDER BY id")) {
                sel.setFetchSize(3);
                sel.setInt(1, 0);
                try (ResultSet rs = sel.executeQuery()) { while (rs.next()) { rs.getString(2); } }
            }

            // A 1 MiB stream parameter (several long-data chunks), then a mid-size one.
            try (PreparedStatement f = c.prepareStatement("INSERT INTO files (id, body) VALUES (?, ?)")) {
                for (int id = 1; id <= 2; id++) {
                    byte[] b = new byte[id == 1 ? 1 << 20 : 70000];
                    for (int i = 0; i < b.length; i++) b[i] = (byte) ((i * 13 + id) & 0xff);
                    f.setInt(1, id);
                    f.setBinaryStream(2, new ByteArrayInputStream(b), b.length);
                    f.executeUpdate();
                }
            }
            query(c, "SELECT id, LENGTH(body), MD5(body) FROM files ORDER BY id");

            c.setCatalog("drv_cjx_b");
            query(c, "INSERT INTO audit (id, what) VALUES (1, 'via setCatalog')");
            c.setCatalog("drv_cjx");
            c.isValid(2);
        }

        // Text batches, rewritten into one multi-row INSERT and one multi-statement string.
        try (Connection c = DriverManager.getConnection(base.replace("useServerPrepStmts=true", "useServerPrepStmts=false")
                + "&rewriteBatchedStatements=true&allowMultiQueries=true", user, pass)) {
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO drv_cjx_b.audit (id, what) VALUES (?, ?)")) {
                for (int i = 10; i < 40; i++) { ins.setInt(1, i); ins.setString(2, "batch ✓ " + i); ins.addBatch(); }
                ins.executeBatch();
            }
            try (Statement s = c.createStatement()) {
                s.addBatch("UPDATE drv_cjx_b.audit SET what = CONCAT(what, '!') WHERE id < 20");
                s.addBatch("DELETE FROM drv_cjx_b.audit WHERE id = 39");
                s.addBatch("INSERT INTO drv_cjx_b.audit (id, what) VALUES (99, 'last')");
                s.executeBatch();
            }
            query(c, "SELECT COUNT(*) FROM drv_cjx_b.audit; SELECT MAX(id) FROM orders");
        }

        // A compressed connection with server-side prepared statements and a large result.
        try (Connection c = DriverManager.getConnection(base + "&useCompression=true", user, pass)) {
            orders(c, 300, 310, "zipped");
            query(c, "SELECT id, customer, meta, note, REPEAT(customer, 50) FROM orders ORDER BY id");
            try (PreparedStatement sel = c.prepareStatement("SELECT body FROM files WHERE id = ?")) {
                sel.setInt(1, 2);
                try (ResultSet rs = sel.executeQuery()) { while (rs.next()) { rs.getBytes(1); } }
            }
        }

        StringBuilder sb = new StringBuilder("{");
        for (Map.Entry<String, Integer> e : ConnectorJ.sent.entrySet()) {
            if (sb.length() > 1) sb.append(", ");
            sb.append('"').append(e.getKey()).append("\": ").append(e.getValue());
        }
        System.out.println(sb.append('}'));
    }
}
