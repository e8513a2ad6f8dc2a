package fanout_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/workers/fanout"
)

// groupMessage is a text message of sender to a group's members (the
// sender aside): no recipient.
func groupMessage(sender int64, members []int64, source string) events.MessageSentV1 {
	m := textMessage(sender, 0, source)
	m.MemberIDs = members
	return m
}

// groupMessageJSON is a group message's newMessage frame: no recipientId.
func groupMessageJSON(m events.MessageSentV1) string {
	return fmt.Sprintf(`{"type":"newMessage","data":{"id":%q,"conversationId":%q,"senderId":%d,`+
		`"contentType":"text","textContent":"hello","clientMessageId":"c-1","createdAt":"2026-03-01T12:00:00.123Z"}}`,
		m.MessageID, m.ConversationID, m.SenderID)
}

// A group message reaches every member's devices and the sender's other
// ones; each member reached gets a receipt of their own, each other one a
// push request of their own, and the sender one messageDelivered frame.
func TestGroupMessageReachesMembersWithReceiptsAndPushesPerMember(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	const sender, b, c, d = 1, 2, 3, 4 // d has no live connection
	source, senderOther := h.dial(t, sender), h.dial(t, sender)
	bPhone, bTablet, cPhone := h.dial(t, b), h.dial(t, b), h.dial(t, c)
	bystander := h.dial(t, 5)

	m := groupMessage(sender, []int64{b, c, d}, source.id)
	e := envelope(t, sender, m.ConversationID, m)
	handle(t, f, e)

	want := groupMessageJSON(m)
	bPhone.expectJSON(t, want)
	bTablet.expectJSON(t, want)
	cPhone.expectJSON(t, want)
	senderOther.expectJSON(t, want)
	bystander.expectNothing(t)

	pub := h.bus.published()
	if len(pub) != 3 {
		t.Fatalf("published %d events (%v), want 2 MessageDelivered and 1 PushRequested", len(pub), ids(pub))
	}
	seen := map[string]bool{}
	for _, p := range pub {
		if !events.IsUUID(p.ID) || p.ID == e.ID || seen[p.ID] {
			t.Errorf("published id %q: want a UUID of its own, not the message's event id", p.ID)
		}
		seen[p.ID] = true
		if p.ConversationID != m.ConversationID {
			t.Errorf("published %s of conversation %q, want %q", p.Type, p.ConversationID, m.ConversationID)
		}
	}

	ds := delivered(t, h.bus)
	var reached []int64
	for _, x := range ds {
		if x.MessageID != m.MessageID || x.ConversationID != m.ConversationID || x.SenderID != sender || !x.Group {
			t.Errorf("receipt %+v, want message %s of sender %d with Group set", x, m.MessageID, sender)
		}
		reached = append(reached, x.RecipientID)
	}
	slices.Sort(reached)
	if !slices.Equal(reached, []int64{b, c}) {
		t.Fatalf("receipts for members %v, want one for each of %d and %d", reached, b, c)
	}

	ps := pushRequests(t, h.bus)
	if len(ps) != 1 || ps[0].RecipientID != d || ps[0].MessageID != m.MessageID || ps[0].SenderID != sender ||
		ps[0].ConversationID != m.ConversationID || ps[0].TextContent != m.TextContent || !ps[0].CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("push requests %+v, want one of message %s to member %d", ps, m.MessageID, d)
	}

	// The sender's devices, the sending one included, get one receipt
	// (the first member's) and nothing else.
	receipt := fmt.Sprintf(`{"type":"messageDelivered","data":{"messageId":%q,"conversationId":%q,"deliveredAt":%q}}`,
		m.MessageID, m.ConversationID, ds[0].DeliveredAt.UTC().Format(time.RFC3339Nano))
	source.expectJSON(t, receipt)
	senderOther.expectJSON(t, receipt)
	source.expectNothing(t)
	senderOther.expectNothing(t)
	for _, dev := range []*device{bPhone, bTablet, cPhone} {
		dev.expectNothing(t)
	}

	t.Run("redelivery sends again and publishes the same event ids", func(t *testing.T) {
		handle(t, f, e)
		bPhone.expectJSON(t, want)
		bTablet.expectJSON(t, want)
		cPhone.expectJSON(t, want)
		senderOther.expectJSON(t, want)
		pub := h.bus.published()
		if len(pub) != 6 {
			t.Fatalf("published %d events in all, want 3 per delivery", len(pub))
		}
		key := func(es []events.Envelope) map[string]string {
			out := map[string]string{}
			for _, e := range es {
				out[e.ID] = e.Type
			}
			return out
		}
		if first, again := key(pub[:3]), key(pub[3:]); !reflect.DeepEqual(first, again) {
			t.Errorf("redelivery published %v, want the same ids as %v", again, first)
		}
	})
}

// countingLookups records every connection lookup.
type countingLookups struct {
	fanout.Connections
	mu      sync.Mutex
	lookups [][]int64
}

func (c *countingLookups) ByUsers(ctx context.Context, ids []int64) (map[int64][]connstore.Connection, error) {
	c.mu.Lock()
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	c.lookups = append(c.lookups, sorted)
	c.mu.Unlock()
	return c.Connections.ByUsers(ctx, ids)
}

func (c *countingLookups) recorded() [][]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lookups)
}

// A batch looks up the connections of all the members it concerns at once,
// not member by member, receipts included.
func TestGroupBatchLooksUpConnectionsOnce(t *testing.T) {
	h := newHarness(t)
	conns := &countingLookups{Connections: h.store}
	f := fanout.New(conns, h.client, h.bus, nil, testLogger(t))
	sender, b, c := h.dial(t, 1), h.dial(t, 2), h.dial(t, 3)

	m := groupMessage(1, []int64{2, 3, 4}, "")
	g := events.GroupChangedV1{ConversationID: m.ConversationID, ActorID: 1, Action: events.GroupRemoved,
		UserIDs: []int64{6}, MemberIDs: []int64{1, 2, 3, 4, 5}, At: createdAt}
	batch := []events.Envelope{envelope(t, 1, m.ConversationID, m), envelope(t, 1, g.ConversationID, g)}
	for i, err := range f.HandleBatch(context.Background(), batch) {
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, batch[i].Type, err)
		}
	}
	got := conns.recorded()
	if want := [][]int64{{1, 2, 3, 4, 5, 6}}; !reflect.DeepEqual(got, want) {
		t.Errorf("lookups %v, want one, of %v", got, want)
	}
	// It did post, each connection's frames in batch order: the lookup
	// served both events.
	system := systemMessageJSON(batch[1], g, `{"action":"removed","actorId":1,"userIds":[6]}`)
	for _, d := range []*device{sender, b, c} {
		d.expectJSON(t, groupMessageJSON(m))
		d.expectJSON(t, system)
	}
	if d := delivered(t, h.bus); len(d) != 2 {
		t.Errorf("receipts %+v, want one per member reached", d)
	}
}

func systemMessageJSON(e events.Envelope, g events.GroupChangedV1, system string) string {
	return fmt.Sprintf(`{"type":"newMessage","data":{"id":%q,"conversationId":%q,"senderId":%d,`+
		`"contentType":"system","createdAt":"2026-03-01T12:00:00.123Z","system":%s}}`,
		e.ID, g.ConversationID, g.ActorID, system)
}

// A removal's system message goes to the members left and to those
// removed, and to nobody else; it publishes nothing.
func TestGroupChangedRemovedReachesMembersAndRemoved(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	actor, actorOther := h.dial(t, 1), h.dial(t, 1)
	member2, member3 := h.dial(t, 2), h.dial(t, 3)
	removed := h.dial(t, 4)
	bystander := h.dial(t, 5)

	g := events.GroupChangedV1{ConversationID: newID(), ActorID: 1, Action: events.GroupRemoved,
		UserIDs: []int64{4}, MemberIDs: []int64{1, 2, 3}, At: createdAt}
	e := envelope(t, 1, g.ConversationID, g)
	handle(t, f, e)

	want := systemMessageJSON(e, g, `{"action":"removed","actorId":1,"userIds":[4]}`)
	for _, d := range []*device{actor, actorOther, member2, member3, removed} {
		d.expectJSON(t, want)
	}
	bystander.expectNothing(t)
	for _, d := range []*device{actor, actorOther, member2, member3, removed} {
		d.expectNothing(t) // once each
	}
	if pub := h.bus.published(); len(pub) != 0 {
		t.Errorf("published %v, want nothing for a group change", ids(pub))
	}

	// Once removed, a user learns of the group's later changes no more.
	t.Run("a later rename skips the removed user", func(t *testing.T) {
		r := events.GroupChangedV1{ConversationID: g.ConversationID, ActorID: 2, Action: events.GroupRenamed,
			Title: "new title", MemberIDs: []int64{1, 2, 3}, At: createdAt}
		e := envelope(t, 2, r.ConversationID, r)
		handle(t, f, e)
		want := systemMessageJSON(e, r, `{"action":"renamed","actorId":2,"title":"new title"}`)
		for _, d := range []*device{actor, actorOther, member2, member3} {
			d.expectJSON(t, want)
		}
		removed.expectNothing(t)
		bystander.expectNothing(t)
	})
}

// Typing in a group reaches the other members only.
func TestGroupTypingReachesMembersOnly(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	typist, typistOther := h.dial(t, 1), h.dial(t, 1)
	b, bOther, c := h.dial(t, 2), h.dial(t, 2), h.dial(t, 3)
	bystander := h.dial(t, 4)

	ty := events.TypingV1{ConversationID: newID(), UserID: 1, IsTyping: true, MemberIDs: []int64{2, 3}}
	handle(t, f, envelope(t, 1, ty.ConversationID, ty))
	want := fmt.Sprintf(`{"type":"typing","data":{"conversationId":%q,"userId":1,"isTyping":true}}`, ty.ConversationID)
	for _, d := range []*device{b, bOther, c} {
		d.expectJSON(t, want)
	}
	typist.expectNothing(t)
	typistOther.expectNothing(t)
	bystander.expectNothing(t)
	if pub := h.bus.published(); len(pub) != 0 {
		t.Errorf("published %v, want nothing for typing", ids(pub))
	}
}
