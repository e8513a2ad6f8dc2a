package db_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
)

// migratedUpTo returns a pool on a new database with the migrations before
// version applied (and recorded), as a server still running the previous
// release has it.
func migratedUpTo(t *testing.T, version string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	dbURL, admin := dbtest.New(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := u.Path[1:] + "_before"
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	if _, err := pool.Exec(ctx, `CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	versions, err := db.Versions()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		if v >= version {
			break
		}
		body, err := os.ReadFile("migrations/" + v + ".sql")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, string(body)); err != nil {
			t.Fatalf("apply %s: %v", v, err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			t.Fatal(err)
		}
	}
	return pool
}

// Migration 0008 alters messages, which every request reads: behind a
// long transaction it gives up (lock_timeout) rather than queue every
// request of the app behind its own lock, and its new CHECK constraints
// are added without scanning the table under that lock.
func TestMessageChangesMigrationDoesNotQueueBehindLocks(t *testing.T) {
	ctx := context.Background()
	pool := migratedUpTo(t, "0008_message_changes")
	reader, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Rollback(ctx) //nolint:errcheck // rolled back below unless the test fails first
	if _, err := reader.Exec(ctx, `SELECT count(*) FROM messages`); err != nil {
		t.Fatal(err)
	}
	// A generous bound: without lock_timeout the migration would wait for
	// the reader forever.
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = db.Migrate(waitCtx, pool)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" { // lock_not_available
		t.Fatalf("migrate behind a reader: %v; want a lock timeout", err)
	}
	if err := reader.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate once the reader is gone: %v", err)
	}
	rows, err := pool.Query(ctx, `SELECT conname FROM pg_constraint
		WHERE conrelid = 'messages'::regclass AND contype = 'c' AND NOT convalidated ORDER BY conname`)
	if err != nil {
		t.Fatal(err)
	}
	notValidated, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(notValidated) != 3 {
		t.Fatalf("constraints added NOT VALID: %v; want the three of 0008", notValidated)
	}
}
