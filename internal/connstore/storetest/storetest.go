// Package storetest is the contract suite every connstore.Store
// implementation must pass. Each implementation's tests call Run.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/connstore"
)

// Run runs the contract suite. newStore is called once per subtest; it may
// return a store over a backend shared with other subtests, because every
// subtest uses its own random connection and user ids.
//
// Precision: ConnectedAt and LastPingAt must survive at millisecond
// precision in UTC. ExpiresAt may be rounded up to the next whole second
// (DynamoDB TTL takes epoch seconds) but never down: a connection must not
// expire earlier than requested.
func Run(t *testing.T, newStore func(t *testing.T) connstore.Store) {
	t.Run("PutGetRoundTrip", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		want := conn(newID(t), newUserID(t), 2*time.Hour)
		mustPut(t, s, want)
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		assertConn(t, got, want)
		for name, ts := range map[string]time.Time{
			"ConnectedAt": got.ConnectedAt, "LastPingAt": got.LastPingAt, "ExpiresAt": got.ExpiresAt,
		} {
			if ts.Location() != time.UTC {
				t.Errorf("%s location = %v, want UTC", name, ts.Location())
			}
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Get(t.Context(), newID(t))
		if !errors.Is(err, connstore.ErrNotFound) {
			t.Fatalf("Get unknown: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("PutReplaces", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		first := conn(newID(t), newUserID(t), time.Hour)
		mustPut(t, s, first)
		second := conn(first.ID, newUserID(t), 2*time.Hour)
		second.ConnectedAt = first.ConnectedAt.Add(time.Minute)
		second.LastPingAt = second.ConnectedAt
		second.Gateway = "another " + first.Gateway
		mustPut(t, s, second)
		got, err := s.Get(ctx, first.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		assertConn(t, got, second)
		// The connection moved to another user: the first must not list it.
		if list := mustByUser(t, s, first.UserID); len(list) != 0 {
			t.Errorf("ByUser(old user) = %v, want none", ids(list))
		}
		if list := mustByUser(t, s, second.UserID); !slices.Equal(ids(list), []string{first.ID}) {
			t.Errorf("ByUser(new user) = %v, want [%s]", ids(list), first.ID)
		}
	})

	t.Run("DeleteThenGet", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		c := conn(newID(t), newUserID(t), time.Hour)
		mustPut(t, s, c)
		if err := s.Delete(ctx, c.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get(ctx, c.ID); !errors.Is(err, connstore.ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
		}
		if list := mustByUser(t, s, c.UserID); len(list) != 0 {
			t.Errorf("ByUser after Delete = %v, want none", ids(list))
		}
	})

	t.Run("DeleteUnknown", func(t *testing.T) {
		s := newStore(t)
		if err := s.Delete(t.Context(), newID(t)); err != nil {
			t.Fatalf("Delete unknown: %v, want nil", err)
		}
	})

	t.Run("NoGatewayRoundTrip", func(t *testing.T) {
		// Records written before gateways and token expiries were
		// recorded have neither.
		s, ctx := newStore(t), t.Context()
		want := conn(newID(t), newUserID(t), time.Hour)
		want.Gateway = ""
		want.TokenExpiresAt = time.Time{} // not recorded: no bound
		mustPut(t, s, want)
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		assertConn(t, got, want)
	})

	t.Run("FeedRoundTrip", func(t *testing.T) {
		// Fanout picks each connection's frames by its mode, from ByUsers.
		s, ctx := newStore(t), t.Context()
		user := newUserID(t)
		feed, fast := conn(newID(t), user, time.Hour), conn(newID(t), user, time.Hour)
		feed.Feed = true
		mustPut(t, s, feed)
		mustPut(t, s, fast)
		check := func(how string, got connstore.Connection) {
			t.Helper()
			want := fast
			if got.ID == feed.ID {
				want = feed
			}
			if got.Feed != want.Feed {
				t.Errorf("%s %s: Feed = %v, want %v", how, got.ID, got.Feed, want.Feed)
			}
		}
		for _, c := range []connstore.Connection{feed, fast} {
			got, err := s.Get(ctx, c.ID)
			if err != nil {
				t.Fatalf("Get %s: %v", c.ID, err)
			}
			check("Get", got)
		}
		list := mustByUser(t, s, user)
		if len(list) != 2 {
			t.Fatalf("ByUser = %v, want both connections", ids(list))
		}
		for _, c := range list {
			check("ByUser", c)
		}
		byUsers, err := s.ByUsers(ctx, []int64{user})
		if err != nil {
			t.Fatalf("ByUsers: %v", err)
		}
		if len(byUsers[user]) != 2 {
			t.Fatalf("ByUsers = %v, want both connections", ids(byUsers[user]))
		}
		for _, c := range byUsers[user] {
			check("ByUsers", c)
		}

		// Replacing a record replaces its mode too.
		feed.Feed = false
		mustPut(t, s, feed)
		got, err := s.Get(ctx, feed.ID)
		if err != nil {
			t.Fatalf("Get replaced %s: %v", feed.ID, err)
		}
		if got.Feed {
			t.Errorf("Get %s replaced without feed mode: Feed = true, want false", feed.ID)
		}
	})

	t.Run("DeleteByGateway", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		mine, other := "gateway-"+newID(t), "gateway-"+newID(t)
		alice, bob := newUserID(t), newUserID(t)
		// More of mine than a small page, over two users, one expired.
		var doomed []connstore.Connection
		for i := range 7 {
			c := conn(newID(t), []int64{alice, bob}[i%2], time.Hour)
			if i == 0 {
				c = conn(c.ID, c.UserID, -time.Minute)
			}
			c.Gateway = mine
			doomed = append(doomed, c)
		}
		kept := conn(newID(t), alice, time.Hour)
		kept.Gateway = other
		unclaimed := conn(newID(t), bob, time.Hour)
		unclaimed.Gateway = ""
		for _, c := range append(slices.Clone(doomed), kept, unclaimed) {
			mustPut(t, s, c)
		}

		users, err := s.DeleteByGateway(ctx, mine)
		if err != nil {
			t.Fatalf("DeleteByGateway: %v", err)
		}
		var want []int64
		for _, c := range doomed {
			want = append(want, c.UserID)
		}
		slices.Sort(users)
		slices.Sort(want)
		if !slices.Equal(users, want) {
			t.Errorf("DeleteByGateway removed the records of users %v, want %v (one per record)", users, want)
		}
		for _, c := range doomed {
			if _, err := s.Get(ctx, c.ID); !errors.Is(err, connstore.ErrNotFound) {
				t.Errorf("Get %s of the deleted gateway: err = %v, want ErrNotFound", c.ID, err)
			}
		}
		for _, c := range []connstore.Connection{kept, unclaimed} {
			got, err := s.Get(ctx, c.ID)
			if err != nil {
				t.Errorf("Get %s of gateway %q: %v", c.ID, c.Gateway, err)
				continue
			}
			assertConn(t, got, c)
		}
		if got := ids(mustByUser(t, s, alice)); !slices.Equal(got, []string{kept.ID}) {
			t.Errorf("ByUser(alice) = %v, want [%s]", got, kept.ID)
		}
		if got := ids(mustByUser(t, s, bob)); !slices.Equal(got, []string{unclaimed.ID}) {
			t.Errorf("ByUser(bob) = %v, want [%s]", got, unclaimed.ID)
		}
		if users, err := s.DeleteByGateway(ctx, mine); err != nil || len(users) != 0 {
			t.Errorf("second DeleteByGateway = %v, %v; want none, nil", users, err)
		}
	})

	t.Run("DeleteByGatewayRefusesEmpty", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		c := conn(newID(t), newUserID(t), time.Hour)
		c.Gateway = ""
		mustPut(t, s, c)
		if _, err := s.DeleteByGateway(ctx, ""); !errors.Is(err, connstore.ErrNoGateway) {
			t.Fatalf("DeleteByGateway(\"\"): err = %v, want ErrNoGateway", err)
		}
		if _, err := s.Get(ctx, c.ID); err != nil {
			t.Fatalf("Get after refused DeleteByGateway: %v", err)
		}
	})

	t.Run("Touch", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		c := conn(newID(t), newUserID(t), time.Hour)
		mustPut(t, s, c)
		at := c.LastPingAt.Add(90*time.Second + 123*time.Millisecond)
		exp := at.Add(2*time.Hour + 456*time.Millisecond)
		if err := s.Touch(ctx, c.ID, at, exp); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		got, err := s.Get(ctx, c.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		want := c
		want.LastPingAt, want.ExpiresAt = at, exp
		assertConn(t, got, want)
	})

	t.Run("TouchUnknown", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		id := newID(t)
		now := time.Now()
		if err := s.Touch(ctx, id, now, now.Add(time.Hour)); !errors.Is(err, connstore.ErrNotFound) {
			t.Fatalf("Touch unknown: err = %v, want ErrNotFound", err)
		}
		// Touch must not create a record.
		if _, err := s.Get(ctx, id); !errors.Is(err, connstore.ErrNotFound) {
			t.Fatalf("Get after Touch unknown: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("ByUser", func(t *testing.T) {
		s := newStore(t)
		alice, bob := newUserID(t), newUserID(t)
		// Alice on three devices, one of whose records outlived its connection.
		phone := conn(newID(t), alice, 2*time.Hour)
		laptop := conn(newID(t), alice, time.Hour)
		stale := conn(newID(t), alice, -time.Minute)
		other := conn(newID(t), bob, time.Hour)
		for _, c := range []connstore.Connection{phone, laptop, stale, other} {
			mustPut(t, s, c)
		}
		got := mustByUser(t, s, alice)
		gotIDs := ids(got)
		slices.Sort(gotIDs)
		wantIDs := []string{phone.ID, laptop.ID}
		slices.Sort(wantIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Fatalf("ByUser(alice) = %v, want %v", gotIDs, wantIDs)
		}
		for _, c := range got {
			switch c.ID {
			case phone.ID:
				assertConn(t, c, phone)
			case laptop.ID:
				assertConn(t, c, laptop)
			}
		}
		if got := ids(mustByUser(t, s, bob)); !slices.Equal(got, []string{other.ID}) {
			t.Errorf("ByUser(bob) = %v, want [%s]", got, other.ID)
		}
	})

	t.Run("ByUsers", func(t *testing.T) {
		s := newStore(t)
		alice, bob, carol := newUserID(t), newUserID(t), newUserID(t)
		phone, laptop := conn(newID(t), alice, 2*time.Hour), conn(newID(t), alice, time.Hour)
		stale := conn(newID(t), bob, -time.Minute)
		other := conn(newID(t), carol, time.Hour)
		for _, c := range []connstore.Connection{phone, laptop, stale, other} {
			mustPut(t, s, c)
		}
		got, err := s.ByUsers(t.Context(), []int64{alice, bob, alice, newUserID(t)})
		if err != nil {
			t.Fatalf("ByUsers: %v", err)
		}
		if len(got) != 1 {
			t.Fatalf("ByUsers = %v, want alice's connections only (bob's expired, carol not asked)", got)
		}
		gotIDs, wantIDs := ids(got[alice]), []string{phone.ID, laptop.ID}
		slices.Sort(gotIDs)
		slices.Sort(wantIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Fatalf("ByUsers(alice) = %v, want %v", gotIDs, wantIDs)
		}
		for _, c := range got[alice] {
			want := phone
			if c.ID == laptop.ID {
				want = laptop
			}
			assertConn(t, c, want)
		}
		if none, err := s.ByUsers(t.Context(), nil); err != nil || len(none) != 0 {
			t.Fatalf("ByUsers(none) = %v, %v", none, err)
		}
	})

	t.Run("ByUserNone", func(t *testing.T) {
		s := newStore(t)
		got, err := s.ByUser(t.Context(), newUserID(t))
		if err != nil {
			t.Fatalf("ByUser: %v", err)
		}
		if got == nil || len(got) != 0 {
			t.Fatalf("ByUser(no connections) = %#v, want empty non-nil slice", got)
		}
	})

	t.Run("ByUserMany", func(t *testing.T) {
		// More than a small page: implementations that page through
		// results must follow every page.
		s := newStore(t)
		user := newUserID(t)
		var want []string
		for range 30 {
			c := conn(newID(t), user, time.Hour)
			mustPut(t, s, c)
			want = append(want, c.ID)
		}
		got := ids(mustByUser(t, s, user))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("ByUser = %d ids, want %d", len(got), len(want))
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s, ctx := newStore(t), t.Context()
		user := newUserID(t)
		shared := newID(t)
		const workers = 20
		own := make([]connstore.Connection, workers)
		variants := make([]connstore.Connection, workers)
		for i := range workers {
			own[i] = conn(newID(t), user, time.Hour)
			// Every worker also writes its own version of one shared id;
			// the survivor must be exactly one of them, never a mix.
			v := conn(shared, user, time.Duration(i+1)*time.Minute)
			v.ConnectedAt = v.ConnectedAt.Add(time.Duration(i) * time.Second)
			v.LastPingAt = v.ConnectedAt
			variants[i] = v
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for i := range workers {
			wg.Go(func() {
				errs <- worker(ctx, s, i, own[i], variants[i])
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			return
		}

		wantIDs := []string{shared}
		for i, c := range own {
			_, err := s.Get(ctx, c.ID)
			if i%2 == 0 {
				if !errors.Is(err, connstore.ErrNotFound) {
					t.Errorf("Get deleted %s: err = %v, want ErrNotFound", c.ID, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("Get kept %s: %v", c.ID, err)
			}
			wantIDs = append(wantIDs, c.ID)
		}
		got := ids(mustByUser(t, s, user))
		slices.Sort(got)
		slices.Sort(wantIDs)
		if !slices.Equal(got, wantIDs) {
			t.Errorf("ByUser after concurrent writes = %v, want %v", got, wantIDs)
		}
		survivor, err := s.Get(ctx, shared)
		if err != nil {
			t.Fatalf("Get shared: %v", err)
		}
		if !slices.ContainsFunc(variants, func(v connstore.Connection) bool { return sameConn(survivor, v) }) {
			t.Errorf("shared connection %+v is none of the written versions (torn write?)", survivor)
		}
	})
}

// worker puts its own connection, pings it, writes the shared one, and
// disconnects again if its index is even.
func worker(ctx context.Context, s connstore.Store, i int, own, shared connstore.Connection) error {
	if err := s.Put(ctx, own); err != nil {
		return fmt.Errorf("worker %d: Put: %w", i, err)
	}
	if err := s.Touch(ctx, own.ID, own.LastPingAt.Add(time.Second), own.ExpiresAt); err != nil {
		return fmt.Errorf("worker %d: Touch: %w", i, err)
	}
	if err := s.Put(ctx, shared); err != nil {
		return fmt.Errorf("worker %d: Put shared: %w", i, err)
	}
	if _, err := s.ByUser(ctx, own.UserID); err != nil {
		return fmt.Errorf("worker %d: ByUser: %w", i, err)
	}
	if i%2 == 0 {
		if err := s.Delete(ctx, own.ID); err != nil {
			return fmt.Errorf("worker %d: Delete: %w", i, err)
		}
		// A second $disconnect for the same id must be harmless.
		if err := s.Delete(ctx, own.ID); err != nil {
			return fmt.Errorf("worker %d: Delete again: %w", i, err)
		}
	}
	return nil
}

// conn builds a connection opened a minute ago that expires ttl from now,
// held by a gateway of its own. Times carry sub-millisecond digits on
// purpose: stores may drop them.
func conn(id string, userID int64, ttl time.Duration) connstore.Connection {
	now := time.Now()
	connected := now.Add(-time.Minute).Add(-123456 * time.Nanosecond)
	return connstore.Connection{
		ID:          id,
		UserID:      userID,
		ConnectedAt: connected,
		LastPingAt:  connected.Add(30*time.Second + 654321*time.Nanosecond),
		ExpiresAt:   now.Add(ttl).Add(789 * time.Millisecond),
		Gateway:     "gateway-of-" + id,
		// Its own instant, so that a store mixing it up with another
		// field fails.
		TokenExpiresAt: now.Add(ttl / 2).Add(321 * time.Millisecond),
	}
}

func assertConn(t *testing.T, got, want connstore.Connection) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.Gateway != want.Gateway || got.Feed != want.Feed {
		t.Errorf("got id/user/gateway/feed %q/%d/%q/%v, want %q/%d/%q/%v",
			got.ID, got.UserID, got.Gateway, got.Feed, want.ID, want.UserID, want.Gateway, want.Feed)
	}
	if !sameMilli(got.ConnectedAt, want.ConnectedAt) {
		t.Errorf("ConnectedAt = %v, want %v", got.ConnectedAt, ms(want.ConnectedAt))
	}
	if !sameMilli(got.LastPingAt, want.LastPingAt) {
		t.Errorf("LastPingAt = %v, want %v", got.LastPingAt, ms(want.LastPingAt))
	}
	if !sameMilli(got.TokenExpiresAt, want.TokenExpiresAt) {
		t.Errorf("TokenExpiresAt = %v, want %v", got.TokenExpiresAt, ms(want.TokenExpiresAt))
	}
	if !expiryOK(got.ExpiresAt, want.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v (or up to 1 s later)", got.ExpiresAt, ms(want.ExpiresAt))
	}
}

func sameConn(got, want connstore.Connection) bool {
	return got.ID == want.ID && got.UserID == want.UserID && got.Gateway == want.Gateway && got.Feed == want.Feed &&
		sameMilli(got.ConnectedAt, want.ConnectedAt) &&
		sameMilli(got.LastPingAt, want.LastPingAt) &&
		sameMilli(got.TokenExpiresAt, want.TokenExpiresAt) &&
		expiryOK(got.ExpiresAt, want.ExpiresAt)
}

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func sameMilli(got, want time.Time) bool { return ms(got).Equal(ms(want)) }

func expiryOK(got, want time.Time) bool {
	return !ms(got).Before(ms(want)) && got.Sub(want) < time.Second
}

func mustPut(t *testing.T, s connstore.Store, c connstore.Connection) {
	t.Helper()
	if err := s.Put(t.Context(), c); err != nil {
		t.Fatalf("Put %s: %v", c.ID, err)
	}
}

func mustByUser(t *testing.T, s connstore.Store, userID int64) []connstore.Connection {
	t.Helper()
	list, err := s.ByUser(t.Context(), userID)
	if err != nil {
		t.Fatalf("ByUser %d: %v", userID, err)
	}
	for _, c := range list {
		if c.UserID != userID {
			t.Errorf("ByUser(%d) returned %s of user %d", userID, c.ID, c.UserID)
		}
	}
	return list
}

func ids(list []connstore.Connection) []string {
	out := make([]string, 0, len(list))
	for _, c := range list {
		out = append(out, c.ID)
	}
	return out
}

// newID looks like an API Gateway connection id, random so that subtests
// can share one backend.
func newID(t *testing.T) string {
	t.Helper()
	var b [9]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("rand: %v", err)
	}
	return hex.EncodeToString(b[:]) + "="
}

func newUserID(t *testing.T) int64 {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("rand: %v", err)
	}
	// Positive and below 2^53 so that no store's number type loses digits.
	return int64(binary.BigEndian.Uint64(b[:])>>11) + 1
}
