package db_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
)

func TestGetOrCreateDirectIsRaceFree(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := context.Background()
	const n = 20
	ids := make([]uuid.UUID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := int64(1), int64(2)
			if i%2 == 1 {
				a, b = b, a // the pair in either order is the same conversation
			}
			ids[i], _, errs[i] = db.GetOrCreateDirect(ctx, pool, uuid.Must(uuid.NewV7()), a, b)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("caller %d got %s, caller 0 got %s", i, ids[i], ids[0])
		}
	}
	var convs, parts int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM conversations`).Scan(&convs); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM conversation_participants`).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if convs != 1 || parts != 2 {
		t.Fatalf("got %d conversations and %d participants, want 1 and 2", convs, parts)
	}
	if _, _, err := db.GetOrCreateDirect(ctx, pool, uuid.Must(uuid.NewV7()), 3, 3); err == nil {
		t.Fatal("conversation with oneself was created")
	}
}
