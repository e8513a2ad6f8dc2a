package pgstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/db"
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

// TestFeedConnectionWaitsForABatchAppending: a connection in feed mode is
// recorded only once a persister's batch holding its user's feed head has
// committed, so that the batch either sees it (and announces) or the
// client's sync after connecting sees the batch's entries; a plain
// connection does not wait.
func TestFeedConnectionWaitsForABatchAppending(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := t.Context()
	s := pgstore.New(pool)
	at := time.Now()
	conn := func(id string, feed bool) connstore.Connection {
		return connstore.Connection{ID: id, UserID: 9, ConnectedAt: at, LastPingAt: at, ExpiresAt: at.Add(time.Hour), Feed: feed}
	}
	batch, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = batch.Rollback(ctx) }()
	if err := db.New(batch).TakeFeedHeads(ctx, []int64{9}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, conn("plain", false)); err != nil {
		t.Fatalf("a plain connection: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Put(ctx, conn("feed", true)) }()
	// Until the batch commits, the Put waits on the head's lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%ws_connections%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the feed connection was recorded while a batch held its user's feed head (err %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the feed connection's Put is not waiting on a lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := batch.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the feed connection after the batch: %v", err)
	}
	if c, err := s.Get(ctx, "feed"); err != nil || !c.Feed {
		t.Fatalf("Get feed = %+v, %v", c, err)
	}
}

// TestFeedConnectionRemovalIsNoted: removing a feed-mode connection, by id
// or with its gateway, notes the time on its user's feed head (the
// persister goes on announcing the user's entries for a while); removing a
// plain one does not.
func TestFeedConnectionRemovalIsNoted(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := t.Context()
	s := pgstore.New(pool)
	at := time.Now()
	put := func(id string, user int64, feed bool) {
		t.Helper()
		if err := s.Put(ctx, connstore.Connection{ID: id, UserID: user, Gateway: "g1", ConnectedAt: at, LastPingAt: at, ExpiresAt: at.Add(time.Hour), Feed: feed}); err != nil {
			t.Fatal(err)
		}
	}
	closedAt := func(user int64) *time.Time {
		t.Helper()
		var ts *time.Time
		if err := pool.QueryRow(ctx, `SELECT feed_closed_at FROM user_feed_heads WHERE user_id = $1`, user).Scan(&ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	put("f1", 1, true)
	put("f2", 2, true)
	put("p2", 2, false)
	if closedAt(1) != nil || closedAt(2) != nil {
		t.Fatal("a feed head notes a removal before any")
	}
	if err := s.Delete(ctx, "p2"); err != nil {
		t.Fatal(err)
	}
	if closedAt(2) != nil {
		t.Fatal("removing a plain connection was noted")
	}
	if err := s.Delete(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	if closedAt(1) == nil {
		t.Fatal("removing a feed connection by id was not noted")
	}
	if users, err := s.DeleteByGateway(ctx, "g1"); err != nil || len(users) != 1 || users[0] != 2 {
		t.Fatalf("DeleteByGateway = %v, %v; want user 2", users, err)
	}
	if closedAt(2) == nil {
		t.Fatal("removing a feed connection with its gateway was not noted")
	}
}
