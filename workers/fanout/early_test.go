package fanout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/workers/fanout"
)

// The fast path posts a committed message at once; its queued copy then
// posts nothing more and publishes the delivery receipt, once.
func TestEarlyDeliveryIsCompletedByTheQueuedCopy(t *testing.T) {
	h := newHarness(t)
	poster := &countingPoster{Poster: h.client}
	f := h.fanout(t, poster, nil)
	sender, phone := h.dial(t, 1), h.dial(t, 2)

	m := textMessage(1, 2, "")
	e := envelope(t, 1, m.ConversationID, m)
	f.HandleEarly(context.Background(), []events.Envelope{e})
	phone.expectJSON(t, newMessageJSON(m))
	sender.expectJSON(t, newMessageJSON(m)) // the sender's other device
	if pub := h.bus.published(); len(pub) != 0 {
		t.Fatalf("the fast path published %v; receipts are the queued copy's", ids(pub))
	}
	posts := poster.calls.Load()

	handle(t, f, e)
	if got := poster.calls.Load() - posts; got != 1 {
		t.Errorf("the queued copy made %d posts, want 1 (the sender's receipt)", got)
	}
	if d := delivered(t, h.bus); len(d) != 1 || d[0].MessageID != m.MessageID {
		t.Fatalf("receipts %+v, want one for %s", d, m.MessageID)
	}
	sender.read(t) // the receipt
	phone.expectNothing(t)

	// A redelivery, with the fast path's record gone, posts again: at
	// least once, as always.
	handle(t, f, e)
	phone.expectJSON(t, newMessageJSON(m))
}

// What the fast path could not post (its lookup failed) the queued copy
// posts.
func TestEarlyFailureIsLeftToTheQueuedCopy(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	phone := h.dial(t, 2)

	m := textMessage(1, 2, "")
	e := envelope(t, 1, m.ConversationID, m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the fast path is stopping: it posts nothing
	f.HandleEarly(ctx, []events.Envelope{e})

	handle(t, f, e)
	phone.expectJSON(t, newMessageJSON(m))
	if d := delivered(t, h.bus); len(d) != 1 {
		t.Fatalf("receipts %+v, want one", d)
	}
}

// What the fast path could not post because its connection lookup failed,
// the queued copy posts.
func TestEarlyLookupFailureIsLeftToTheQueuedCopy(t *testing.T) {
	h := newHarness(t)
	conns := &failingLookups{Connections: h.store}
	conns.fail.Store(1)
	f := fanout.New(conns, h.client, h.bus, nil, testLogger(t))
	phone := h.dial(t, 2)

	m := textMessage(1, 2, "")
	e := envelope(t, 1, m.ConversationID, m)
	f.HandleEarly(context.Background(), []events.Envelope{e})
	handle(t, f, e) // waits for the fast path's outcome
	if n := conns.fail.Load(); n != 0 {
		t.Fatalf("the fast path did not look up (%d failures left)", n)
	}
	phone.expectJSON(t, newMessageJSON(m))
	if d := delivered(t, h.bus); len(d) != 1 {
		t.Fatalf("receipts %+v, want one", d)
	}
}

// failingLookups fails as many connection lookups as fail says.
type failingLookups struct {
	fanout.Connections
	fail atomic.Int32
}

func (c *failingLookups) ByUsers(ctx context.Context, ids []int64) (map[int64][]connstore.Connection, error) {
	if c.fail.Add(-1) >= 0 {
		return nil, errors.New("connection store unreachable")
	}
	c.fail.Store(0)
	return c.Connections.ByUsers(ctx, ids)
}

// A message whose post the fast path made and the device did not take gets
// no receipt from its queued copy but a push request, and is not posted
// again.
func TestEarlyUndeliveredMessageHasNoReceipt(t *testing.T) {
	h := newHarness(t)
	phone := h.dial(t, 2)
	poster := &failingPoster{Poster: h.client, fail: phone.id}
	f := h.fanout(t, poster, nil)
	m := textMessage(1, 2, "")
	e := envelope(t, 1, m.ConversationID, m)
	f.HandleEarly(context.Background(), []events.Envelope{e})
	handle(t, f, e)
	if n := poster.calls.Load(); n != 1 {
		t.Errorf("%d posts to the failing device, want the fast path's one", n)
	}
	if d := delivered(t, h.bus); len(d) != 0 {
		t.Errorf("receipts %+v for a message no device received", d)
	}
	if p := pushRequests(t, h.bus); len(p) != 1 || p[0].MessageID != m.MessageID {
		t.Errorf("push requests %+v, want one for message %s", p, m.MessageID)
	}
}

// A queued copy handled before its hand-over (a claim can follow the
// commit before the bus hands the events over) makes the late hand-over
// post nothing.
func TestLateHandOffPostsNothing(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	phone := h.dial(t, 2)
	f.HandleEarly(context.Background(), nil) // the fast path is on

	first, second := textMessage(1, 2, ""), textMessage(1, 2, "")
	e1, e2 := envelope(t, 1, first.ConversationID, first), envelope(t, 1, second.ConversationID, second)
	handle(t, f, e1)
	phone.expectJSON(t, newMessageJSON(first))
	f.HandleEarly(context.Background(), []events.Envelope{e1, e2})
	handle(t, f, e2) // waits for the fast path, which had e1 first
	phone.expectJSON(t, newMessageJSON(second))
	phone.expectNothing(t)
}
