package connstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/internal/connstore/storetest"
)

// heldStore is an Index whose ByUsers is answered from memory, so that the
// contract suite checks the in-memory view against the store's semantics.
type heldStore struct{ *connstore.Index }

func (s heldStore) ByUsers(ctx context.Context, userIDs []int64) (map[int64][]connstore.Connection, error) {
	return s.Held().ByUsers(ctx, userIDs)
}

func TestIndexContract(t *testing.T) {
	_, pool := dbtest.New(t)
	storetest.Run(t, func(*testing.T) connstore.Store {
		return heldStore{connstore.NewIndex(pgstore.New(pool), "")}
	})
}

// Held answers for its gateway's connections written through the index
// only: another gateway's records, or records written around the index, are
// not this process's to post to.
func TestHeldIsTheIndexedGatewaysConnections(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := t.Context()
	store := pgstore.New(pool)
	x := connstore.NewIndex(store, "gw-a")
	now := time.Now().UTC().Truncate(time.Millisecond)
	conn := func(id string, user int64, gw string, age time.Duration) connstore.Connection {
		return connstore.Connection{ID: id, UserID: user, Gateway: gw, ConnectedAt: now.Add(-age), LastPingAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	for _, c := range []connstore.Connection{conn("a2", 1, "gw-a", time.Minute), conn("a1", 1, "gw-a", 2*time.Minute), conn("b1", 1, "gw-b", 0), conn("a3", 2, "gw-a", 0)} {
		if err := x.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Put(ctx, conn("around", 1, "gw-a", 0)); err != nil {
		t.Fatal(err)
	}
	// Expired in memory: not listed.
	expired := conn("old", 2, "gw-a", 0)
	expired.ExpiresAt = now.Add(-time.Second)
	if err := x.Put(ctx, expired); err != nil {
		t.Fatal(err)
	}

	got, err := x.Held().ByUsers(ctx, []int64{1, 2, 3, 1})
	if err != nil {
		t.Fatal(err)
	}
	if ids := idsOf(got[1]); len(ids) != 2 || ids[0] != "a1" || ids[1] != "a2" {
		t.Errorf("user 1 = %v, want [a1 a2] (oldest first, gw-a's, written through the index)", ids)
	}
	if ids := idsOf(got[2]); len(ids) != 1 || ids[0] != "a3" {
		t.Errorf("user 2 = %v, want [a3]", ids)
	}
	if _, ok := got[3]; ok {
		t.Errorf("user 3 has an entry: %v", got[3])
	}
	// The store itself still sees everything.
	all, err := x.ByUsers(ctx, []int64{1})
	if err != nil {
		t.Fatal(err)
	}
	if len(all[1]) != 4 {
		t.Errorf("store's ByUsers = %v, want 4 connections", idsOf(all[1]))
	}

	// A record replaced by one of another gateway leaves the view.
	if err := x.Put(ctx, conn("a2", 1, "gw-b", 0)); err != nil {
		t.Fatal(err)
	}
	if err := x.Held().Delete(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	got, _ = x.Held().ByUsers(ctx, []int64{1, 2})
	if len(got[1]) != 0 {
		t.Errorf("user 1 after replace and delete = %v, want none", idsOf(got[1]))
	}
	if _, err := store.Get(ctx, "a1"); err == nil {
		t.Error("Held.Delete left the record in the store")
	}
	if users, err := x.DeleteByGateway(ctx, "gw-a"); err != nil || len(users) == 0 {
		t.Fatalf("DeleteByGateway = %v, %v", users, err)
	}
	got, _ = x.Held().ByUsers(ctx, []int64{2})
	if len(got[2]) != 0 {
		t.Errorf("user 2 after DeleteByGateway = %v, want none", idsOf(got[2]))
	}
}

func idsOf(list []connstore.Connection) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.ID)
	}
	return out
}
