package pgstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/internal/connstore/storetest"
)

func TestContract(t *testing.T) {
	_, pool := dbtest.New(t)
	storetest.Run(t, func(*testing.T) connstore.Store { return pgstore.New(pool) })
}

func TestSweep(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := t.Context()
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := base
	s := pgstore.New(pool, pgstore.WithClock(func() time.Time { return clock }))

	put := func(id string, expires time.Time) {
		t.Helper()
		err := s.Put(ctx, connstore.Connection{
			ID: id, UserID: 7, ConnectedAt: base.Add(-time.Hour), LastPingAt: base.Add(-time.Minute), ExpiresAt: expires,
		})
		if err != nil {
			t.Fatalf("Put %s: %v", id, err)
		}
	}
	put("gone", base.Add(-time.Second))
	put("edge", base) // expires exactly now: expired, as ByUser agrees
	put("live", base.Add(time.Second))

	if got := listIDs(t, s, 7); len(got) != 1 || got[0] != "live" {
		t.Fatalf("ByUser before Sweep = %v, want [live]", got)
	}
	// Unswept expired rows stay readable by id, like DynamoDB before TTL runs.
	if _, err := s.Get(ctx, "gone"); err != nil {
		t.Fatalf("Get expired before Sweep: %v", err)
	}

	n, err := s.Sweep(ctx, base)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n != 2 {
		t.Fatalf("Sweep deleted %d rows, want 2", n)
	}
	for _, id := range []string{"gone", "edge"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, connstore.ErrNotFound) {
			t.Errorf("Get %s after Sweep: err = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Get(ctx, "live"); err != nil {
		t.Errorf("Get live after Sweep: %v", err)
	}
	if n, err := s.Sweep(ctx, base); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want 0, nil", n, err)
	}

	// The injected clock decides what ByUser hides.
	clock = base.Add(time.Second)
	if got := listIDs(t, s, 7); len(got) != 0 {
		t.Errorf("ByUser once live expired = %v, want none", got)
	}
}

func listIDs(t *testing.T, s *pgstore.Store, userID int64) []string {
	t.Helper()
	list, err := s.ByUser(t.Context(), userID)
	if err != nil {
		t.Fatalf("ByUser: %v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}
