package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/workers/fanout"
)

func TestWithheldMessageReachesOnlyTheSendersOtherDevices(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	source, other := h.dial(t, 1), h.dial(t, 1)
	recipient := h.dial(t, 2)

	m := textMessage(1, 2, source.id)
	m.WithheldFromRecipient = true
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	other.expectJSON(t, newMessageJSON(m))
	recipient.expectNothing(t)
	source.expectNothing(t)
	if pub := h.bus.published(); len(pub) != 0 {
		t.Fatalf("published %v: a withheld message is never delivered", ids(pub))
	}
}

// TestPresenceIsDebounced drives fanout's presence with events as the edge
// publishes them, over real PostgreSQL (audience, last seen) and the local
// gateway.
func TestPresenceIsDebounced(t *testing.T) {
	const grace = 300 * time.Millisecond
	h := newHarness(t)
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := context.Background()
	for _, pair := range [][2]int64{{1, 2}, {2, 3}} {
		if _, _, err := db.GetOrCreateDirect(ctx, pool, uuid.Must(uuid.NewV7()), pair[0], pair[1]); err != nil {
			t.Fatal(err)
		}
	}
	f := fanout.New(h.store, h.client, h.bus, nil, testLogger(t), fanout.WithPresence(db.New(pool), grace, nil))
	partner, stranger := h.dial(t, 1), h.dial(t, 4)
	presence := func(online bool, at time.Time) events.Envelope {
		return envelope(t, 2, "", events.PresenceV1{UserID: 2, Online: online, At: at})
	}
	onlineJSON := `{"type":"presence","data":{"userId":2,"online":true,"lastSeenAt":null}}`
	offlineJSON := func(at time.Time) string {
		return fmt.Sprintf(`{"type":"presence","data":{"userId":2,"online":false,"lastSeenAt":%q}}`, at.UTC().Format(time.RFC3339Nano))
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)

	online := presence(true, t0)
	handle(t, f, online)
	partner.expectJSON(t, onlineJSON)
	handle(t, f, online) // redelivered: nothing new
	partner.expectNothing(t)
	// A second device that also found itself first (they connected at
	// once): the user is online already.
	handle(t, f, presence(true, t0.Add(time.Millisecond)))
	partner.expectNothing(t)
	stranger.expectNothing(t)

	// Offline, then back within the grace: nothing at all.
	handle(t, f, presence(false, t0.Add(time.Second)))
	handle(t, f, presence(true, t0.Add(2*time.Second)))
	time.Sleep(grace + 200*time.Millisecond)
	partner.expectNothing(t)

	// Offline for good: announced once, after the grace, last seen stored.
	left := t0.Add(3 * time.Second)
	handle(t, f, presence(false, left))
	partner.expectJSON(t, offlineJSON(left))
	var seen time.Time
	if err := pool.QueryRow(ctx, `SELECT last_seen_at FROM user_presence WHERE user_id = 2`).Scan(&seen); err != nil || !seen.Equal(left) {
		t.Fatalf("last seen %v (%v), want %v", seen, err, left)
	}

	// Out of order: an online older than a held offline does not cancel it.
	later := t0.Add(5 * time.Second)
	handle(t, f, presence(false, later))
	handle(t, f, presence(true, t0.Add(4*time.Second)))
	partner.expectJSON(t, offlineJSON(later))

	// An offline of a user who is connected again (through another
	// process) is not announced.
	handle(t, f, presence(true, t0.Add(6*time.Second)))
	partner.expectJSON(t, onlineJSON)
	h.dial(t, 2)
	handle(t, f, presence(false, t0.Add(7*time.Second)))
	time.Sleep(grace + 200*time.Millisecond)
	partner.expectNothing(t)
	stranger.expectNothing(t)
}

// A connection found gone on a post (its $disconnect never ran, or will
// find no record) is announced offline after the grace, unless its user
// has another live connection then.
func TestGoneConnectionAnnouncesOffline(t *testing.T) {
	const grace = 200 * time.Millisecond
	h := newHarness(t)
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := context.Background()
	if _, _, err := db.GetOrCreateDirect(ctx, pool, uuid.Must(uuid.NewV7()), 1, 2); err != nil {
		t.Fatal(err)
	}
	f := fanout.New(h.store, h.client, h.bus, nil, testLogger(t), fanout.WithPresence(db.New(pool), grace, nil))
	partner := h.dial(t, 1)
	old := time.Now().Add(-time.Hour)
	stale := connstore.Connection{ID: "c3RhbGUtdHdv", UserID: 2, ConnectedAt: old, LastPingAt: old, ExpiresAt: time.Now().Add(time.Hour)}
	if err := h.store.Put(ctx, stale); err != nil {
		t.Fatal(err)
	}

	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	partner.expectJSON(t, newMessageJSON(m)) // the sender's other device
	if _, err := h.store.Get(ctx, stale.ID); !errors.Is(err, connstore.ErrNotFound) {
		t.Fatalf("stale connection: Get = %v, want ErrNotFound", err)
	}
	var got struct {
		Type string
		Data struct {
			UserID     int64      `json:"userId"`
			Online     bool       `json:"online"`
			LastSeenAt *time.Time `json:"lastSeenAt"`
		}
	}
	if err := json.Unmarshal(partner.read(t), &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "presence" || got.Data.UserID != 2 || got.Data.Online || got.Data.LastSeenAt == nil {
		t.Fatalf("partner got %+v, want user 2 offline with a last seen", got)
	}
}

// An online whose batch failed before its frames went out (the connection
// lookup failed) is announced when the event is redelivered.
func TestFailedOnlineIsAnnouncedOnRedelivery(t *testing.T) {
	h := newHarness(t)
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, _, err := db.GetOrCreateDirect(context.Background(), pool, uuid.Must(uuid.NewV7()), 1, 2); err != nil {
		t.Fatal(err)
	}
	conns := &failingLookups{Connections: h.store}
	f := fanout.New(conns, h.client, h.bus, nil, testLogger(t), fanout.WithPresence(db.New(pool), time.Second, h.store))
	partner := h.dial(t, 1)
	online := envelope(t, 2, "", events.PresenceV1{UserID: 2, Online: true, At: time.Now().UTC().Truncate(time.Microsecond)})
	conns.fail.Store(1)
	if err := f.Handle(context.Background(), online); err == nil {
		t.Fatal("Handle with the connection lookup failing: no error, want the event retried")
	}
	partner.expectNothing(t)
	handle(t, f, online) // the redelivery
	partner.expectJSON(t, `{"type":"presence","data":{"userId":2,"online":true,"lastSeenAt":null}}`)
}

// The same on the fast path: an online it could not post (its lookup
// failed) is posted by the queued copy.
func TestFailedEarlyOnlineIsPostedByTheQueuedCopy(t *testing.T) {
	h := newHarness(t)
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, _, err := db.GetOrCreateDirect(context.Background(), pool, uuid.Must(uuid.NewV7()), 1, 2); err != nil {
		t.Fatal(err)
	}
	conns := &failingLookups{Connections: h.store}
	f := fanout.New(conns, h.client, h.bus, nil, testLogger(t), fanout.WithPresence(db.New(pool), time.Second, h.store))
	partner := h.dial(t, 1)
	online := envelope(t, 2, "", events.PresenceV1{UserID: 2, Online: true, At: time.Now().UTC().Truncate(time.Microsecond)})
	conns.fail.Store(1)
	f.HandleEarly(context.Background(), []events.Envelope{online})
	handle(t, f, online) // waits for the fast path's outcome
	if n := conns.fail.Load(); n != 0 {
		t.Fatalf("the fast path did not look up (%d failures left)", n)
	}
	partner.expectJSON(t, `{"type":"presence","data":{"userId":2,"online":true,"lastSeenAt":null}}`)
}
