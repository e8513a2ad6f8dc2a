package persister_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/workers/persister"
)

// TestConversationCreated covers a direct conversation's creation as the
// persister applies it: created where missing, in both feeds once, and
// nothing for a creation that lost to another of the same users.
func TestConversationCreated(t *testing.T) {
	runFixtures(t, 10_000_000, []fixtureCase{
		{"a missing conversation is created, and its creation is in both feeds once", createdWhereMissing},
		{"a conversation the ingress created gets its entry", createdByTheIngress},
		{"a creation that lost to another appends nothing", createdLost},
		{"a bad creation fails alone", createdInvalid},
	})
}

// created is the ConversationCreated the ingress publishes for u(a) and
// u(b), a creating.
func (f fixture) created(t *testing.T, id uuid.UUID, a, b int64, at time.Time) events.Envelope {
	t.Helper()
	ps := []int64{f.u(a), f.u(b)}
	slices.Sort(ps)
	return f.envelope(t, a, id, at, events.ConversationCreatedV1{ConversationID: id.String(), CreatorID: f.u(a),
		ParticipantIDs: ps, CreatedAt: at})
}

func (f fixture) createdAt(t *testing.T, id uuid.UUID) (time.Time, bool) {
	t.Helper()
	var at time.Time
	err := f.pool.QueryRow(context.Background(), `SELECT created_at FROM conversations WHERE id = $1`, id).Scan(&at)
	if err != nil {
		return at, false
	}
	return at.UTC(), true
}

func createdWhereMissing(t *testing.T, f fixture) {
	id, t0 := uuid.Must(uuid.NewV7()), now().Add(-time.Minute)
	c := f.created(t, id, 6, 5, t0)
	m := f.sent(t, id, 6, 5, "hi")
	// In one batch, as a replay into an emptied database hands them over:
	// the conversation is created as of its event, not by its message.
	batch(t, f.p, c, m)
	if at, ok := f.createdAt(t, id); !ok || !at.Equal(t0) {
		t.Fatalf("conversation %s: created at %v (exists %v), want %v", id, at, ok, t0)
	}
	for _, u := range []int64{5, 6} {
		es := f.feed(t, u)
		if !slices.Equal(kinds(es), []string{persister.KindConversationCreated, persister.KindNewMessage}) {
			t.Fatalf("u%d's feed: %v", u, kinds(es))
		}
		d := es[0].Data
		if es[0].Conv != id || d["conversationId"] != id.String() || d["kind"] != "direct" || d["creatorId"] != float64(f.u(6)) ||
			fmt.Sprint(d["participantIds"]) != fmt.Sprint([]any{float64(f.u(5)), float64(f.u(6))}) || !es[0].At.Equal(t0) {
			t.Fatalf("u%d's conversationCreated: %+v", u, es[0])
		}
		if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d["createdAt"])); err != nil || !at.Equal(t0) {
			t.Fatalf("u%d's createdAt %v (%v), want %v", u, d["createdAt"], err, t0)
		}
	}
	// Redelivered, alone and in a batch: nothing more.
	before := f.feed(t, 5)
	handle(t, f.p, c)
	batch(t, f.p, c, m)
	if after := f.feed(t, 5); !slices.EqualFunc(after, before, sameEntry) {
		t.Fatalf("redelivery changed the feed: %v", kinds(after))
	}
}

func createdByTheIngress(t *testing.T, f fixture) {
	id, t0 := uuid.Must(uuid.NewV7()), now()
	if got, _, err := db.GetOrCreateDirectAt(context.Background(), f.pool, id, f.u(7), f.u(8), t0); err != nil || got != id {
		t.Fatalf("create: %v %v", got, err)
	}
	handle(t, f.p, f.created(t, id, 7, 8, t0))
	for _, u := range []int64{7, 8} {
		if es := f.feed(t, u); len(es) != 1 || es[0].Kind != persister.KindConversationCreated || es[0].Conv != id {
			t.Fatalf("u%d's feed: %v", u, kinds(es))
		}
	}
}

func createdLost(t *testing.T, f fixture) {
	// f.conv is u(1) and u(2)'s; a second creation of theirs lost to it.
	lost := uuid.Must(uuid.NewV7())
	handle(t, f.p, f.created(t, lost, 2, 1, now()))
	if _, ok := f.createdAt(t, lost); ok {
		t.Fatalf("the losing conversation %s was created", lost)
	}
	for _, u := range []int64{1, 2} {
		if es := f.feed(t, u); len(es) != 0 {
			t.Fatalf("u%d's feed after a lost creation: %v", u, kinds(es))
		}
	}
}

func createdInvalid(t *testing.T, f fixture) {
	id := uuid.Must(uuid.NewV7())
	bad := f.envelope(t, 9, id, now(), events.ConversationCreatedV1{ConversationID: id.String(), CreatorID: f.u(9),
		ParticipantIDs: []int64{f.u(9), f.u(9)}, CreatedAt: now()})
	good := f.created(t, uuid.Must(uuid.NewV7()), 9, 10, now())
	errs := f.p.HandleBatch(context.Background(), []events.Envelope{bad, good})
	if !errors.Is(errs[0], events.ErrInvalid) || errs[1] != nil {
		t.Fatalf("outcomes %v, want the bad creation invalid and the good one applied", errs)
	}
	if es := f.feed(t, 10); len(es) != 1 || es[0].Kind != persister.KindConversationCreated {
		t.Fatalf("u10's feed: %v", kinds(es))
	}
	if _, ok := f.createdAt(t, id); ok {
		t.Fatal("the bad creation created a conversation")
	}
}
