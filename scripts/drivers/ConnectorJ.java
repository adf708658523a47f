// Connector/J (org.mariadb.jdbc 2.7, Debian's libmariadb-java) workload for record-fixtures.sh.
// Run: java -cp /usr/share/java/mariadb-java-client.jar ConnectorJ.java HOST USER PASS ED_USER ED_PASS
// Server-side prepared statements (useServerPrepStmts=true), batches with a BLOB parameter
// (pipelined COM_STMT_SEND_LONG_DATA + COM_STMT_EXECUTE), batches with useBulkStmts=true
// (COM_STMT_BULK_EXECUTE on MariaDB), a compressed connection, and a MariaDB ed25519 user.
// Prints on stdout, as JSON, the commands the driver wrote on its sockets: a SocketFactory hands it
// sockets whose output is tapped, and each client packet with sequence number 0 (the start of a
// command) is counted by its first byte (compressed frames are inflated first).
import java.io.*;
import java.net.Socket;
import java.sql.*;
import java.util.*;
import java.util.zip.Inflater;

public class ConnectorJ {
    static final Map<String, Integer> sent = new TreeMap<>();

    static String name(int b) {
        switch (b) {
            case 0x01: return "COM_QUIT";
            case 0x02: return "COM_INIT_DB";
            case 0x03: return "COM_QUERY";
            case 0x0e: return "COM_PING";
            case 0x11: return "COM_CHANGE_USER";
            case 0x16: return "COM_STMT_PREPARE";
            case 0x17: return "COM_STMT_EXECUTE";
            case 0x18: return "COM_STMT_SEND_LONG_DATA";
            case 0x19: return "COM_STMT_CLOSE";
            case 0x1a: return "COM_STMT_RESET";
            case 0x1b: return "COM_SET_OPTION";
            case 0x1f: return "COM_RESET_CONNECTION";
            case 0xfa: return "COM_STMT_BULK_EXECUTE";
            default: return String.format("COM_0x%02x", b);
        }
    }

    /** Counts the commands in a client's byte stream (plain, then compressed if negotiated). */
    static final class Tap extends FilterOutputStream {
        private final ByteArrayOutputStream raw = new ByteArrayOutputStream();
        private final ByteArrayOutputStream inner = new ByteArrayOutputStream();
        private boolean compressed;

        Tap(OutputStream out) { super(out); }

        @Override public void write(int b) throws IOException { write(new byte[] {(byte) b}, 0, 1); }

        @Override public void write(byte[] b, int off, int len) throws IOException {
            out.write(b, off, len);
            raw.write(b, off, len);
            try { parse(); } catch (Exception e) { throw new IOException("tap", e); }
        }

        private static int le3(byte[] a, int i) { return (a[i] & 0xff) | (a[i + 1] & 0xff) << 8 | (a[i + 2] & 0xff) << 16; }

        private void parse() throws Exception {
            byte[] a = raw.toByteArray();
            int i = 0;
            while (true) {
                if (!compressed) {
                    if (a.length - i < 4 || a.length - i < 4 + le3(a, i)) break;
                    int len = le3(a, i);
                    packet(a[i + 3] & 0xff, Arrays.copyOfRange(a, i + 4, i + 4 + len));
                    i += 4 + len;
                } else {
                    if (a.length - i < 7 || a.length - i < 7 + le3(a, i)) break;
                    int clen = le3(a, i), ulen = le3(a, i + 4);
                    // A frame with compressed sequence id 0 and nothing carried over starts a
                    // command, whatever its inner id (2.7 keeps the previous command's).
                    boolean fresh = inner.size() == 0 && (a[i + 3] & 0xff) == 0;
                    byte[] body = Arrays.copyOfRange(a, i + 7, i + 7 + clen);
                    if (ulen > 0) {
                        Inflater inf = new Inflater();
                        inf.setInput(body);
                        byte[] u = new byte[ulen];
                        int n = 0;
                        while (n < ulen) n += inf.inflate(u, n, ulen - n);
                        inf.end();
                        body = u;
                    }
                    inner.write(body);
                    i += 7 + clen;
                    byte[] p = inner.toByteArray();
                    int j = 0;
                    while (p.length - j >= 4 && p.length - j >= 4 + le3(p, j)) {
                        int len = le3(p, j);
                        packet(j == 0 && fresh ? 0 : p[j + 3] & 0xff, Arrays.copyOfRange(p, j + 4, j + 4 + len));
                        j += 4 + len;
                    }
                    inner.reset();
                    inner.write(p, j, p.length - j);
                }
            }
            byte[] rest = Arrays.copyOfRange(a, i, a.length);
            raw.reset();
            raw.write(rest);
        }

        private boolean handshakeSeen;

        private void packet(int seq, byte[] payload) {
            if (seq == 0 && payload.length > 0) {
                synchronized (sent) { sent.merge(name(payload[0] & 0xff), 1, Integer::sum); }
            } else if (seq == 1 && !handshakeSeen && payload.length >= 4) {
                handshakeSeen = true;
                // CLIENT_COMPRESS in the handshake response: what follows it is compressed.
                compressed = (payload[0] & 0x20) != 0;
            }
        }
    }

    /** The socketFactory option: plain sockets whose output goes through a Tap. */
    public static final class TapFactory extends javax.net.SocketFactory {
        public TapFactory() { }
        @Override public Socket createSocket() {
            return new Socket() {
                private OutputStream tap;
                @Override public synchronized OutputStream getOutputStream() throws IOException {
                    if (tap == null) tap = new Tap(super.getOutputStream());
                    return tap;
                }
            };
        }
        @Override public Socket createSocket(String h, int p) throws IOException { Socket s = createSocket(); s.connect(new java.net.InetSocketAddress(h, p)); return s; }
        @Override public Socket createSocket(String h, int p, java.net.InetAddress l, int lp) throws IOException { return createSocket(h, p); }
        @Override public Socket createSocket(java.net.InetAddress h, int p) throws IOException { return createSocket(h.getHostAddress(), p); }
        @Override public Socket createSocket(java.net.InetAddress h, int p, java.net.InetAddress l, int lp) throws IOException { return createSocket(h.getHostAddress(), p); }
    }

    static byte[] blob(int id, int len) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) b[i] = (byte) ((id * 31 + i * 7) & 0xff);
        return b;
    }

    static PreparedStatement prepare(Connection c, String sql) throws SQLException {
        return c.prepareStatement(sql);
    }

    static void exec(PreparedStatement ps) throws SQLException {
        if (ps.execute()) {
            try (ResultSet rs = ps.getResultSet()) { while (rs.next()) { } }
        }
    }

    static void query(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            if (s.execute(sql)) { try (ResultSet rs = s.getResultSet()) { while (rs.next()) { } } }
        }
    }

    public static void main(String[] a) throws Exception {
        String host = a[0], user = a[1], pass = a[2], edUser = a[3], edPass = a[4];
        String port = System.getenv().getOrDefault("DB_PORT", "3306");
        String base = "jdbc:mariadb://" + host + ":" + port + "/drv_cj?useServerPrepStmts=true&socketFactory=ConnectorJ$TapFactory";

        // 1. Prepared SELECT / INSERT / UPDATE and two batches.
        try (Connection c = DriverManager.getConnection(base, user, pass)) {
            PreparedStatement ins = prepare(c, "INSERT INTO items (id, name, qty) VALUES (?, ?, ?)");
            for (int i = 1; i <= 20; i++) {
                ins.setInt(1, i); ins.setString(2, "item-" + i); ins.setInt(3, i * 10);
                exec(ins);
            }
            PreparedStatement sel = prepare(c, "SELECT id, name, qty FROM items WHERE id = ?");
            for (int i = 1; i <= 20; i++) { sel.setInt(1, i); exec(sel); }
            PreparedStatement upd = prepare(c, "UPDATE items SET qty = qty + ? WHERE id = ?");
            for (int i = 1; i <= 10; i++) { upd.setInt(1, i); upd.setInt(2, i * 2); exec(upd); }

            // Stream parameters are long data: per row one SEND_LONG_DATA then one EXECUTE,
            // written back to back before any response is read.
            PreparedStatement lob = prepare(c, "INSERT INTO blobs (id, data) VALUES (?, ?)");
            for (int i = 1; i <= 30; i++) {
                byte[] b = blob(i, 1500);
                lob.setInt(1, i);
                lob.setBinaryStream(2, new ByteArrayInputStream(b), b.length);
                lob.addBatch();
            }
            lob.executeBatch();

            // Byte arrays in a batch go as long data too (useBulkStmts is off by default in 2.7).
            PreparedStatement bytes = prepare(c, "INSERT INTO blobs (id, data) VALUES (?, ?)");
            for (int i = 101; i <= 120; i++) { bytes.setInt(1, i); bytes.setBytes(2, blob(i, 800)); bytes.addBatch(); }
            bytes.executeBatch();

            query(c, "SELECT COUNT(*), SUM(qty) FROM items");
            for (PreparedStatement p : List.of(ins, sel, upd, lob, bytes)) p.close();
        }

        // 2. A compressed connection.
        try (Connection c = DriverManager.getConnection(base + "&useCompression=true", user, pass)) {
            PreparedStatement sel = prepare(c, "SELECT id, name, qty FROM items WHERE id BETWEEN ? AND ?");
            for (int i = 0; i < 5; i++) { sel.setInt(1, i * 4 + 1); sel.setInt(2, i * 4 + 4); exec(sel); }
            PreparedStatement upd = prepare(c, "UPDATE items SET name = CONCAT(name, ?) WHERE id = ?");
            for (int i = 1; i <= 5; i++) { upd.setString(1, "-z"); upd.setInt(2, i); exec(upd); }
            PreparedStatement bulk = prepare(c, "INSERT INTO blobs (id, data) VALUES (?, ?)");
            for (int i = 201; i <= 220; i++) { bulk.setInt(1, i); bulk.setBytes(2, blob(i, 3000)); bulk.addBatch(); }
            bulk.executeBatch();
            query(c, "SELECT id, LENGTH(data) FROM blobs ORDER BY id");
            for (PreparedStatement p : List.of(sel, upd, bulk)) p.close();
        }

        // 3. useBulkStmts=true: a batch without streams is one COM_STMT_BULK_EXECUTE (MariaDB >= 10.2).
        try (Connection c = DriverManager.getConnection(base + "&useBulkStmts=true", user, pass)) {
            PreparedStatement bulk = prepare(c, "INSERT INTO blobs (id, data) VALUES (?, ?)");
            for (int i = 301; i <= 340; i++) { bulk.setInt(1, i); bulk.setBytes(2, blob(i, 600)); bulk.addBatch(); }
            bulk.executeBatch();
            PreparedStatement upd = prepare(c, "UPDATE items SET qty = ? WHERE id = ?");
            for (int i = 1; i <= 10; i++) { upd.setInt(1, 7 * i); upd.setInt(2, i); upd.addBatch(); }
            upd.executeBatch();
            query(c, "SELECT COUNT(*) FROM blobs");
            bulk.close();
            upd.close();
        }

        // 4. A MariaDB ed25519 user.
        try (Connection c = DriverManager.getConnection(base, edUser, edPass)) {
            PreparedStatement ins = prepare(c, "INSERT INTO items (id, name, qty) VALUES (?, ?, ?)");
            ins.setInt(1, 1000); ins.setString(2, "ed25519"); ins.setInt(3, 1); exec(ins);
            query(c, "SELECT CURRENT_USER()");
            ins.close();
        }

        StringBuilder sb = new StringBuilder("{");
        for (Map.Entry<String, Integer> e : sent.entrySet()) {
            if (sb.length() > 1) sb.append(", ");
            sb.append('"').append(e.getKey()).append("\": ").append(e.getValue());
        }
        System.out.println(sb.append('}'));
    }
}
