package db_test

import (
	"context"
	"crypto/rand"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	_, pool := dbtest.New(t) // already migrated once
	applied, err := db.Migrate(context.Background(), pool)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(applied) != 0 {
		t.Fatalf("second migrate applied %v, want nothing", applied)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("schema_migrations: n=%d err=%v", n, err)
	}
	versions, err := db.Versions()
	if err != nil || len(versions) != n || !slices.IsSorted(versions) {
		t.Fatalf("Versions() = %v, %v; %d applied", versions, err, n)
	}
}

// TestEnsureDatabaseWithoutCreateDB is the managed-server case: the
// application's role may not create databases, and its database exists.
func TestEnsureDatabaseWithoutCreateDB(t *testing.T) {
	dbURL, pool := dbtest.New(t)
	ctx := context.Background()
	role := "parley_nocreatedb_" + strings.ToLower(rand.Text()[:10])
	if _, err := pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	created, err := db.EnsureDatabase(ctx, u.String())
	if err != nil || created {
		t.Fatalf("EnsureDatabase as a role without CREATEDB on an existing database = %v, %v; want false, nil", created, err)
	}
}

func TestContentTypeCheck(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO conversations (id, direct_key) VALUES ('0190b6f4-8a3e-7c2d-9f10-1234567890ab', '1:2')`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO messages (id, conversation_id, seq, sender_id, recipient_id, content_type, text_content, created_at)
		VALUES ('0190b6f4-8a3e-7c2d-9f10-1234567890ac', '0190b6f4-8a3e-7c2d-9f10-1234567890ab', 1, 1, 2, 'sticker', 'x', now())`)
	if err == nil {
		t.Fatal("content_type 'sticker' was accepted")
	}
}
