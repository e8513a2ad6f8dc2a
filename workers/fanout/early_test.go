package fanout_test

import (
	"context"
	"testing"

	"github.com/parleychat/parley/events"
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

// A message nobody received on the fast path gets no receipt from its
// queued copy either, and is not posted twice.
func TestEarlyUndeliveredMessageHasNoReceipt(t *testing.T) {
	h := newHarness(t)
	poster := &countingPoster{Poster: h.client}
	f := h.fanout(t, poster, nil)
	m := textMessage(1, 2, "")
	e := envelope(t, 1, m.ConversationID, m)
	f.HandleEarly(context.Background(), []events.Envelope{e})
	handle(t, f, e)
	if pub := h.bus.published(); len(pub) != 0 {
		t.Errorf("published %v for a message no device received", ids(pub))
	}
	if n := poster.calls.Load(); n != 0 {
		t.Errorf("%d posts with no connection", n)
	}
}
