// Go (database/sql + go-sql-driver/mysql, Debian's golang-github-go-sql-driver-mysql-dev) workload
// for record-fixtures.sh: db.Exec/Query with arguments (prepare, execute, close per call), a
// prepared statement reused, a transaction rolled back and one committed, interpolateParams
// (text protocol), a pool of concurrent connections, NULLs, time.Time, []byte, a failing insert.
// Usage: go run . HOST PORT USER PASS (behind tapproxy.py, which counts commands)
package main

import (
	"database/sql"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func drain(rows *sql.Rows, err error) {
	must(err)
	for rows.Next() {
	}
	must(rows.Close())
}

func main() {
	host, port, user, pass := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	dsn := fmt.Sprintf("%s:%s@tcp(%s:%s)/drv_go?parseTime=true&loc=UTC", user, pass, host, port)
	db, err := sql.Open("mysql", dsn)
	must(err)
	db.SetMaxOpenConns(3)
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				id := int64(w*100 + i + 1)
				var score interface{} = fmt.Sprintf("%d.125", i)
				if i%4 == 3 {
					score = nil
				}
				_, err := db.Exec("INSERT INTO users (id, email, score, created, active, avatar) VALUES (?, ?, ?, ?, ?, ?)",
					id, fmt.Sprintf("u%d@example.com", id), score,
					time.Date(2026, 7, 1+i, 10, 20, 30, 123456000, time.UTC), i%2 == 0, []byte{byte(w), byte(i), 0, 255})
				must(err)
			}
		}(w)
	}
	wg.Wait()
	stmt, err := db.Prepare("SELECT id, email, score, created, active FROM users WHERE id = ?")
	must(err)
	for _, id := range []int64{1, 2, 101, 202} {
		drain(stmt.Query(id))
	}
	must(stmt.Close())
	tx, err := db.Begin()
	must(err)
	_, err = tx.Exec("UPDATE users SET score = 0 WHERE id < ?", 100)
	must(err)
	must(tx.Rollback())
	tx, err = db.Begin()
	must(err)
	_, err = tx.Exec("INSERT INTO sessions (token, user_id) VALUES (?, ?)", "tok-1", 1)
	must(err)
	_, err = tx.Exec("UPDATE sessions SET hits = hits + ? WHERE token = ?", 5, "tok-1")
	must(err)
	must(tx.Commit())
	_, err = db.Exec("INSERT INTO users (id, email) VALUES (?, ?)", 1, "dup@example.com")
	if me, ok := err.(*mysql.MySQLError); !ok || me.Number != 1062 {
		panic(fmt.Sprintf("want a duplicate key, got %v", err))
	}
	drain(db.Query("SELECT COUNT(*), SUM(score) FROM users"))
	must(db.Close())

	// interpolateParams: arguments formatted into the text by the driver, no prepare.
	ip, err := sql.Open("mysql", dsn+"&interpolateParams=true")
	must(err)
	for i := 0; i < 5; i++ {
		_, err = ip.Exec("UPDATE users SET email = ? WHERE id = ?", fmt.Sprintf("ip%d@example.com ✓", i), i+1)
		must(err)
	}
	drain(ip.Query("SELECT id, email FROM users WHERE email LIKE ? ORDER BY id", "ip%"))
	must(ip.Ping())
	must(ip.Close())
}
