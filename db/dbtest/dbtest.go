// Package dbtest gives each test package a fresh, migrated PostgreSQL
// database on the real server named by TEST_DATABASE_URL (default: the local
// server), dropped when the tests finish.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
)

// DefaultURL is the server the tests use unless TEST_DATABASE_URL is set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// New creates a database named after a random suffix, migrates it, and
// returns its URL and a pool. Both are closed and dropped at cleanup.
func New(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = DefaultURL
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("dbtest: parse TEST_DATABASE_URL: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "parley_test_" + hex.EncodeToString(b[:])

	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("dbtest: PostgreSQL is not reachable at %s (start it, or set TEST_DATABASE_URL): %v", u.Redacted(), err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	u.Path = "/" + name
	dbURL := u.String()

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("dbtest: connect: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = admin.Close(ctx)
	})
	if _, err := db.Migrate(ctx, pool); err != nil {
		t.Fatalf("dbtest: migrate: %v", err)
	}
	return dbURL, pool
}
