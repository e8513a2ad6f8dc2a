package db_test

import (
	"context"
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
