package persister_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/workers/persister"
)

// announcements records what the persister publishes. (A stand-in for the
// bus: the end-to-end tests in cmd/chat run the real one.)
type announcements struct {
	mu   sync.Mutex
	envs []events.Envelope
	err  error // what Publish answers, if set
	held bool  // the last announcement taken was Held
}

func (a *announcements) Publish(_ context.Context, envs ...events.Envelope) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.envs = append(a.envs, envs...)
	return nil
}

// take returns the entries announced since the last take, checking each
// event is a valid FeedAppended.
func (a *announcements) take(t *testing.T) []events.FeedEntryRef {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []events.FeedEntryRef
	for _, e := range a.envs {
		var m events.FeedAppendedV1
		if e.Type != events.TypeFeedAppended || !events.Ephemeral(e) {
			t.Fatalf("published %s, want an ephemeral FeedAppended", e.Type)
		}
		if err := e.Unmarshal(&m); err != nil {
			t.Fatal(err)
		}
		out, a.held = append(out, m.Entries...), m.Held
	}
	a.envs = nil
	return out
}

// TestFeedAnnouncements: the persister announces the entries it appended,
// with their positions and epochs as the feed has them, only for users
// holding a connection in feed mode when it looks them up, and nothing for
// a redelivery or a replay, which append nothing; an announcement that
// cannot be published fails its batch, which leaves nothing behind.
func TestFeedAnnouncements(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	ctx := context.Background()
	listening, all := &announcements{}, &announcements{}
	pl := persister.New(pool, quiet, persister.WithFeedAnnouncements(listening, true))
	pa := persister.New(pool, quiet, persister.WithFeedAnnouncements(all, false))
	f := newFixture(t, pool, pl, 1000)
	store := pgstore.New(pool)
	at := time.Now()
	for _, c := range []connstore.Connection{
		{ID: "feed-of-1", UserID: f.u(1), Feed: true},
		{ID: "plain-of-2", UserID: f.u(2)},
		{ID: "expired-feed-of-2", UserID: f.u(2), Feed: true, ExpiresAt: at.Add(-time.Minute)},
	} {
		c.ConnectedAt, c.LastPingAt = at, at
		if c.ExpiresAt.IsZero() {
			c.ExpiresAt = at.Add(time.Hour)
		}
		if err := store.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var epoch int64
	epochOf := func(user int64) int64 {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT epoch FROM user_feed_heads WHERE user_id = $1`, user).Scan(&epoch); err != nil {
			t.Fatal(err)
		}
		return epoch
	}

	m1, m2 := f.sent(t, f.conv, 1, 2, "one"), f.sent(t, f.conv, 2, 1, "two")
	batch(t, pl, m1, m2)
	got := listening.take(t)
	u1 := f.feed(t, 1)
	if len(got) != 2 || len(u1) != 2 {
		t.Fatalf("announced %+v for a feed of %d entries; want u1's two only", got, len(u1))
	}
	for i, r := range got {
		if r.UserID != f.u(1) || r.Position != u1[i].Position || r.Epoch != epochOf(f.u(1)) || r.ChangeID <= 0 || !listening.held {
			t.Fatalf("entry %d announced as %+v; the feed has position %d in epoch %d", i, r, u1[i].Position, epoch)
		}
	}

	// Redelivered, alone and as a batch: nothing appended, nothing announced.
	handle(t, pl, m1, m2)
	batch(t, pl, m1, m2)
	if got := listening.take(t); len(got) != 0 {
		t.Fatalf("a redelivery announced %+v", got)
	}

	// Without the lookup every entry is announced, each user's in
	// position order; a bad event in the batch announces nothing of its
	// own and does not hold back its neighbours'.
	m3 := f.sent(t, f.conv, 1, 2, "three")
	bad := f.sent(t, f.conv, 1, 2, "bad")
	bad.Data = []byte(`{"message_id":"not a uuid"}`)
	errs := pa.HandleBatch(ctx, []events.Envelope{m3, bad})
	if errs[0] != nil || errs[1] == nil {
		t.Fatalf("outcomes %v, want the good one applied and the bad one refused", errs)
	}
	got = all.take(t)
	users := map[int64][]int64{}
	for _, r := range got {
		users[r.UserID] = append(users[r.UserID], r.Position)
	}
	if !slices.Equal(users[f.u(1)], []int64{3}) || !slices.Equal(users[f.u(2)], []int64{3}) || len(users) != 2 {
		t.Fatalf("announced %v, want position 3 of both users", users)
	}

	// The bus refuses: the batch fails whole, nothing of it is stored, and
	// its retry stores and announces it.
	all.err = errors.New("bus down")
	m4 := f.sent(t, f.conv, 2, 1, "four")
	if errs := pa.HandleBatch(ctx, []events.Envelope{m4}); errs[0] == nil {
		t.Fatal("a batch whose announcement failed succeeded")
	}
	var stored int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE id = $1`, m4.ID).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("%d stored (%v) after the failed batch", stored, err)
	}
	all.err = nil
	batch(t, pa, m4)
	if got := all.take(t); len(got) != 2 || all.held {
		t.Fatalf("the retry announced %+v (held %v), want both users' entries, not held", got, all.held)
	}
}
