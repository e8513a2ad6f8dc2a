package chat

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
)

// Two devices of a user connecting at once each find the other's record
// when they count; exactly one of them announces that the user came online,
// and a later connection does not.
func TestConnectingAtOnceAnnouncesOnlineOnce(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := context.Background()
	svc := NewService(pool, nopBus{}, nil, Limits{}, slog.New(slog.DiscardHandler))
	ss := svc.Sessions(pgstore.New(pool), 0)
	now := time.Now().UTC().Truncate(time.Microsecond)
	conn := func(id string, at time.Time) connstore.Connection {
		return connstore.Connection{ID: id, UserID: 7, ConnectedAt: at, LastPingAt: at, ExpiresAt: at.Add(time.Hour), Gateway: "g"}
	}
	// Both recorded before either counts: the race.
	a, b := conn("conn-a", now), conn("conn-b", now.Add(time.Millisecond))
	for _, c := range []connstore.Connection{a, b} {
		if err := ss.conns.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var firsts []string
	for _, c := range []connstore.Connection{b, a} {
		first, err := ss.admit(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if first {
			firsts = append(firsts, c.ID)
		}
	}
	if len(firsts) != 1 || firsts[0] != a.ID {
		t.Fatalf("connections announcing online: %v, want only the older %s", firsts, a.ID)
	}
	later := conn("conn-c", now.Add(time.Second))
	if err := ss.conns.Put(ctx, later); err != nil {
		t.Fatal(err)
	}
	if first, err := ss.admit(ctx, later); err != nil || first {
		t.Fatalf("a connection while others are live: first %v, err %v; want not first", first, err)
	}
}
