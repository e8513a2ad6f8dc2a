package persister_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/workers/persister"
)

// TestFeed covers the sync feed as the persister writes it: gap-free
// positions per user in commit order, only changes that applied, nothing
// twice, and a failing event appends nothing of its own.
func TestFeed(t *testing.T) {
	pool, p := runFixtures(t, 1_000_000, []fixtureCase{
		{"a batch of several users' changes", feedOfABatch},
		{"redelivery appends nothing", feedRedelivery},
		{"two persisters at once keep positions gap-free and in commit order", feedConcurrent},
		{"a failing event appends nothing and leaves its neighbours", feedFailingEvent},
		{"a message withheld from its recipient is not in their feed", feedWithheld},
		{"a read applied when its message arrives is in the sender's feed", feedEarlyRead},
		{"a settings change to the values already there appends nothing", feedSettingsUnchanged},
	})
	t.Run("batching does not change a feed", func(t *testing.T) {
		t.Parallel()
		feedWhateverTheBatches(t, newFixture(t, pool, p, 100_000_000), newFixture(t, pool, p, 200_000_000))
	})
	t.Run("a replay applied by two persisters at once appends each change once", func(t *testing.T) {
		t.Parallel()
		feedConcurrentReplay(t, newFixture(t, pool, p, 300_000_000), newFixture(t, pool, persister.New(pool, quiet), 400_000_000))
	})
}

// The same events, handled once one at a time in one fixture and, in
// another, by two persisters at once that each apply all of them in batches
// split differently (as two consumers replaying one archive would), give
// every change once: the losing persister's copy of a change applies
// nothing, and the heads' locks keep positions 1..n.
//
// Each round of events is of a conversation of u(1) with another user, and
// the second persister takes the rounds last first: two persisters going
// the same way through one conversation meet on the rows they both write
// before they reach the feed, which would leave u(1)'s head lock untested.
func feedConcurrentReplay(t *testing.T, alone, replayed fixture) {
	const rounds = 32
	script := func(f fixture) [][]events.Envelope {
		var out [][]events.Envelope
		for r := range rounds {
			o := int64(r + 2)
			conv := f.direct(t, 1, o)
			parts := []int64{f.u(1), f.u(o)}
			react := func(m events.Envelope, by int64, emoji string, at time.Time) events.Envelope {
				return f.envelope(t, by, conv, at, events.ReactionChangedV1{MessageID: m.ID, ConversationID: conv.String(),
					UserID: f.u(by), Emoji: emoji, ChangedAt: at, ParticipantIDs: parts})
			}
			t0 := now()
			m1 := f.sent(t, conv, 1, o, fmt.Sprintf("r%d one", r))
			m2 := f.sent(t, conv, o, 1, fmt.Sprintf("r%d two", r))
			m3 := f.sent(t, conv, 1, o, fmt.Sprintf("r%d three", r))
			edit := f.envelope(t, 1, conv, t0.Add(4*time.Second), events.MessageEditedV1{MessageID: m3.ID, ConversationID: conv.String(),
				SenderID: f.u(1), TextContent: fmt.Sprintf("r%d three!", r), EditedAt: t0.Add(4 * time.Second),
				Deadline: events.ChangeDeadline(m3.OccurredAt, events.DefaultEditWindow), ParticipantIDs: parts})
			out = append(out, []events.Envelope{
				m1, f.delivered(t, m1, t0), m2, f.read(t, conv, o, t0.Add(time.Second), m1.ID),
				react(m1, o, "👍", t0.Add(time.Second)), m3, f.read(t, conv, 1, t0.Add(2*time.Second), m2.ID),
				react(m2, 1, "🎉", t0.Add(2*time.Second)), react(m1, o, "❤️", t0.Add(3*time.Second)),
				f.read(t, conv, o, t0.Add(3*time.Second), m3.ID), edit,
			})
		}
		return out
	}
	handle(t, alone.p, slices.Concat(script(alone)...)...)

	rs := script(replayed)
	inOrder := slices.Concat(rs...)
	slices.Reverse(rs)
	lastFirst := slices.Concat(rs...)
	second := persister.New(replayed.pool, quiet)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(inOrder))
	for _, run := range []struct {
		p    *persister.Persister
		envs []events.Envelope
		size int
	}{{replayed.p, inOrder, 3}, {second, lastFirst, 2}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < len(run.envs); i += run.size {
				b := run.envs[i:min(i+run.size, len(run.envs))]
				// Two persisters applying the same events can deadlock on
				// message and participant rows; the bus redelivers what
				// failed that way, and so does this, before going on.
				for attempt := 1; len(b) > 0; attempt++ {
					var again []events.Envelope
					for j, err := range run.p.HandleBatch(context.Background(), b) {
						switch {
						case err == nil:
						case events.IsPermanent(err) || attempt == 10:
							errs <- fmt.Errorf("batches of %d, %s %s: %w", run.size, b[j].Type, b[j].ID, err)
						default:
							again = append(again, b[j])
						}
					}
					b = again
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	type key struct {
		event uuid.UUID
		kind  string
	}
	for u := int64(1); u <= rounds+1; u++ {
		got := replayed.feed(t, u) // fails on a gap, a duplicate position or a wrong head
		seen := map[key]bool{}
		for _, e := range got {
			k := key{e.Event, e.Kind}
			if seen[k] {
				t.Fatalf("u%d: %s of event %s twice, again at position %d", u, e.Kind, e.Event, e.Position)
			}
			seen[k] = true
		}
		want, have := kinds(alone.feed(t, u)), kinds(got)
		slices.Sort(want)
		slices.Sort(have)
		if !slices.Equal(have, want) || len(want) < 8 {
			t.Fatalf("u%d's feed replayed at once %v, handled once %v", u, have, want)
		}
	}
}

// The same events, one at a time in one fixture and as one batch in
// another (as a replay batches them), give the same feeds.
func feedWhateverTheBatches(t *testing.T, alone, batched fixture) {
	script := func(f fixture) []events.Envelope {
		t0 := now()
		m1 := f.sent(t, f.conv, 1, 2, "one")
		m2 := f.sent(t, f.conv, 2, 1, "two")
		return []events.Envelope{
			m1, f.delivered(t, m1, t0), f.read(t, f.conv, 2, t0.Add(time.Second), m1.ID),
			m2, f.react(t, m1, 2, "👍", t0.Add(2*time.Second)),
			f.settings(t, f.conv, 1, t0.Add(2*time.Second), events.ConversationSettingsChangedV1{Archived: ptr(true)}),
			f.edit(t, m1, 1, "one!", t0.Add(3*time.Second)), f.read(t, f.conv, 1, t0.Add(4*time.Second), m2.ID),
		}
	}
	handle(t, alone.p, script(alone)...)
	batch(t, batched.p, script(batched)...)
	for _, u := range []int64{1, 2} {
		a, b := kinds(alone.feed(t, u)), kinds(batched.feed(t, u))
		if !slices.Equal(a, b) || len(a) < 6 {
			t.Fatalf("u%d's feed event by event %v, in one batch %v", u, a, b)
		}
	}
}

type feedEntry struct {
	Position int64
	Kind     string
	Conv     uuid.UUID
	Event    uuid.UUID
	At       time.Time
	Data     map[string]any
}

// feed is u(user)'s whole feed, failing unless its positions are 1..n and
// its head is n.
func (f fixture) feed(t *testing.T, user int64) []feedEntry {
	t.Helper()
	ctx := context.Background()
	rows, err := f.pool.Query(ctx, `SELECT f.position, c.kind, c.conversation_id, c.event_id, c.occurred_at, c.body FROM user_feed f JOIN feed_changes c ON c.id = f.change_id WHERE f.user_id = $1 ORDER BY f.position`, f.u(user))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []feedEntry
	for rows.Next() {
		var e feedEntry
		var body []byte
		if err := rows.Scan(&e.Position, &e.Kind, &e.Conv, &e.Event, &e.At, &body); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(body, &e.Data); err != nil {
			t.Fatal(err)
		}
		if e.Position != int64(len(out)+1) {
			t.Fatalf("user %d: position %d at place %d: the feed has a gap or a duplicate", f.u(user), e.Position, len(out)+1)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var head int64
	if err := f.pool.QueryRow(ctx, `SELECT COALESCE((SELECT head FROM user_feed_heads WHERE user_id = $1), 0)`, f.u(user)).Scan(&head); err != nil {
		t.Fatal(err)
	}
	if head != int64(len(out)) {
		t.Fatalf("user %d: head %d with %d entries", f.u(user), head, len(out))
	}
	return out
}

func kinds(es []feedEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Kind)
	}
	return out
}

func batch(t *testing.T, p *persister.Persister, envs ...events.Envelope) {
	t.Helper()
	for i, err := range p.HandleBatch(context.Background(), envs) {
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, envs[i].Type, err)
		}
	}
}

func (f fixture) delivered(t *testing.T, m events.Envelope, at time.Time) events.Envelope {
	t.Helper()
	var s events.MessageSentV1
	if err := m.Unmarshal(&s); err != nil {
		t.Fatal(err)
	}
	return f.envelope(t, 0, uuid.MustParse(s.ConversationID), at, events.MessageDeliveredV1{MessageID: s.MessageID,
		ConversationID: s.ConversationID, SenderID: s.SenderID, RecipientID: s.RecipientID, DeliveredAt: at})
}

func feedOfABatch(t *testing.T, f fixture) {
	other := f.direct(t, 1, 3)
	t0 := now()
	m1 := f.sent(t, f.conv, 1, 2, "one")
	m2 := f.sent(t, other, 1, 3, "two")
	batch(t, f.p, m1, m2)
	m3 := f.sent(t, f.conv, 2, 1, "three")
	// What each user learns follows the queue's order, whatever order the
	// persister applies the batch in (messages first).
	batch(t, f.p,
		f.read(t, f.conv, 2, t0.Add(time.Second), m1.ID),
		m3,
		f.delivered(t, m1, t0.Add(time.Second)),
		f.settings(t, other, 3, t0.Add(2*time.Second), events.ConversationSettingsChangedV1{Pinned: ptr(true)}),
		f.edit(t, m1, 1, "one!", t0.Add(3*time.Second)),
		f.edit(t, m1, 1, "an older edit", t0.Add(2*time.Second)), // superseded: appends nothing
		f.react(t, m1, 2, "👍", t0.Add(4*time.Second)),
		f.envelope(t, 2, f.conv, t0.Add(5*time.Second), events.MessageDeletedV1{MessageID: m3.ID, ConversationID: f.conv.String(), UserID: f.u(2), DeletedAt: t0.Add(5 * time.Second)}),
	)

	u1, u2, u3 := f.feed(t, 1), f.feed(t, 2), f.feed(t, 3)
	if want := []string{"newMessage", "newMessage", "messageRead", "newMessage", "messageDelivered", "messageUpdated", "reactionChanged"}; !slices.Equal(kinds(u1), want) {
		t.Fatalf("u1's feed %v, want %v", kinds(u1), want)
	}
	if want := []string{"newMessage", "messageRead", "newMessage", "messageUpdated", "reactionChanged", "messageDeleted"}; !slices.Equal(kinds(u2), want) {
		t.Fatalf("u2's feed %v, want %v", kinds(u2), want)
	}
	if want := []string{"newMessage", "settingsChanged"}; !slices.Equal(kinds(u3), want) {
		t.Fatalf("u3's feed %v, want %v", kinds(u3), want)
	}
	// Bodies are the frames' data; a new message carries its seq.
	if d := u1[3].Data; d["id"] != m3.ID || d["seq"] != float64(2) || d["textContent"] != "three" || d["conversationId"] != f.conv.String() {
		t.Fatalf("u1's newMessage: %v", d)
	}
	if d := u1[0].Data; d["seq"] != float64(1) || u1[0].Event != uuid.MustParse(m1.ID) || u1[0].Conv != f.conv {
		t.Fatalf("u1's first entry: %+v", u1[0])
	}
	if d := u1[2].Data; d["readerId"] != float64(f.u(2)) || !slices.Equal(d["messageIds"].([]any), []any{m1.ID}) {
		t.Fatalf("u1's messageRead: %v", d)
	}
	if d := u2[3].Data; d["textContent"] != "one!" || d["editedAt"] == nil {
		t.Fatalf("u2's messageUpdated: %v", d)
	}
	if d := u1[6].Data; d["emoji"] != "👍" || d["userId"] != float64(f.u(2)) {
		t.Fatalf("u1's reactionChanged: %v", d)
	}
	if d := u3[1].Data; d["pinned"] != true || d["muted"] != false || d["conversationId"] != other.String() {
		t.Fatalf("u3's settingsChanged: %v", d)
	}
	if d := u2[5].Data; d["messageId"] != m3.ID || d["deletedAt"] == nil {
		t.Fatalf("u2's messageDeleted: %v", d)
	}
}

func feedRedelivery(t *testing.T, f fixture) {
	t0 := now()
	m := f.sent(t, f.conv, 1, 2, "once")
	all := []events.Envelope{
		m,
		f.delivered(t, m, t0),
		f.read(t, f.conv, 2, t0.Add(time.Second), m.ID),
		f.edit(t, m, 1, "once!", t0.Add(time.Second)),
		f.react(t, m, 2, "🎉", t0.Add(time.Second)),
		f.settings(t, f.conv, 2, t0.Add(time.Second), events.ConversationSettingsChangedV1{Muted: ptr(true)}),
	}
	batch(t, f.p, all...)
	before1, before2 := f.feed(t, 1), f.feed(t, 2)
	if len(before1) != 5 || len(before2) != 5 {
		t.Fatalf("feeds %v and %v, want 5 entries each", kinds(before1), kinds(before2))
	}
	// Again as a batch, one by one, and a second receipt of another id.
	batch(t, f.p, all...)
	handle(t, f.p, all...)
	handle(t, f.p, f.delivered(t, m, t0.Add(time.Minute)), f.read(t, f.conv, 2, t0.Add(time.Minute), m.ID))
	if after1, after2 := f.feed(t, 1), f.feed(t, 2); !slices.EqualFunc(after1, before1, sameEntry) || !slices.EqualFunc(after2, before2, sameEntry) {
		t.Fatalf("redelivery changed the feeds:\n%v\n%v", kinds(after1), kinds(after2))
	}
}

func sameEntry(a, b feedEntry) bool {
	return a.Position == b.Position && a.Kind == b.Kind && a.Event == b.Event && fmt.Sprint(a.Data) == fmt.Sprint(b.Data)
}

// Two persisters write batches for the same users at once: u(1) is in
// every conversation. Each feed is 1..n (f.feed checks it) with every
// message once, and within a conversation the feed's order is the
// sequence's, which follows commit order.
func feedConcurrent(t *testing.T, f fixture) {
	second := persister.New(f.pool, quiet)
	convs := []uuid.UUID{f.conv, f.direct(t, 1, 3), f.direct(t, 1, 4)}
	const writers, batches, each = 6, 5, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches*each)
	want := map[string]bool{}
	for w := range writers {
		p := f.p
		if w%2 == 1 {
			p = second
		}
		conv, to := convs[w%3], int64(w%3+2)
		var bs [][]events.Envelope
		for b := range batches {
			var envs []events.Envelope
			for i := range each {
				e := f.sent(t, conv, 1, to, fmt.Sprintf("w%d b%d m%d", w, b, i))
				want[e.ID] = true
				envs = append(envs, e)
			}
			bs = append(bs, envs)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, envs := range bs {
				for _, err := range p.HandleBatch(context.Background(), envs) {
					if err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	u1 := f.feed(t, 1)
	if len(u1) != len(want) {
		t.Fatalf("u1's feed holds %d entries, want %d", len(u1), len(want))
	}
	lastSeq := map[uuid.UUID]float64{}
	for _, e := range u1 {
		id := e.Data["id"].(string)
		if !want[id] {
			t.Fatalf("entry %d: message %s twice or unexpected", e.Position, id)
		}
		delete(want, id)
		if seq := e.Data["seq"].(float64); seq != lastSeq[e.Conv]+1 {
			t.Fatalf("entry %d: seq %v of conversation %s after seq %v: the feed's order is not the commit order", e.Position, seq, e.Conv, lastSeq[e.Conv])
		}
		lastSeq[e.Conv] = e.Data["seq"].(float64)
	}
	for n := int64(2); n <= 4; n++ {
		if got := len(f.feed(t, n)); got != writers/3*batches*each {
			t.Fatalf("u%d's feed holds %d entries, want %d", n, got, writers/3*batches*each)
		}
	}
}

func feedFailingEvent(t *testing.T, f fixture) {
	good := f.sent(t, f.conv, 1, 2, "fine")
	bad := f.sent(t, uuid.Must(uuid.NewV7()), 1, 2, "a conversation the pair does not have")
	late := f.sent(t, f.conv, 2, 1, "fine too")
	errs := f.p.HandleBatch(context.Background(), []events.Envelope{good, bad, late, f.read(t, f.conv, 2, now(), good.ID)})
	if errs[0] != nil || errs[2] != nil || errs[3] != nil || !events.IsPermanent(errs[1]) {
		t.Fatalf("outcomes %v: want only the second to fail, permanently", errs)
	}
	u1, u2 := f.feed(t, 1), f.feed(t, 2)
	if want := []string{"newMessage", "newMessage", "messageRead"}; !slices.Equal(kinds(u1), want) || !slices.Equal(kinds(u2), want) {
		t.Fatalf("feeds %v and %v, want %v", kinds(u1), kinds(u2), want)
	}
	for _, e := range append(u1, u2...) {
		if e.Event == uuid.MustParse(bad.ID) {
			t.Fatalf("the failed event appended entry %+v", e)
		}
	}
	if u1[0].Data["id"] != good.ID || u1[1].Data["id"] != late.ID {
		t.Fatalf("u1's messages: %v, %v", u1[0].Data, u1[1].Data)
	}
}

func feedWithheld(t *testing.T, f fixture) {
	e := f.sent(t, f.conv, 1, 2, "withheld")
	var m events.MessageSentV1
	if err := e.Unmarshal(&m); err != nil {
		t.Fatal(err)
	}
	m.WithheldFromRecipient = true
	e = f.envelope(t, 1, f.conv, m.CreatedAt, m)
	handle(t, f.p, e)
	if u1, u2 := f.feed(t, 1), f.feed(t, 2); len(u1) != 1 || len(u2) != 0 {
		t.Fatalf("feeds %v and %v, want the sender's only", kinds(u1), kinds(u2))
	}
}

func feedEarlyRead(t *testing.T, f fixture) {
	m := f.sent(t, f.conv, 1, 2, "read before stored")
	readAt := now().Add(5 * time.Second)
	handle(t, f.p, f.read(t, f.conv, 2, readAt, m.ID))
	if u1 := f.feed(t, 1); len(u1) != 0 {
		t.Fatalf("a read of nothing stored appended %v", kinds(u1))
	}
	handle(t, f.p, m)
	u1 := f.feed(t, 1)
	if want := []string{"newMessage", "messageRead"}; !slices.Equal(kinds(u1), want) {
		t.Fatalf("u1's feed %v, want %v", kinds(u1), want)
	}
	if d := u1[1].Data; d["readerId"] != float64(f.u(2)) || !slices.Equal(d["messageIds"].([]any), []any{m.ID}) {
		t.Fatalf("messageRead: %v", d)
	}
	if !u1[1].At.Equal(readAt) || !u1[0].At.Equal(m.OccurredAt) {
		t.Fatalf("occurred at %v and %v, want the message's time %v and the read's %v", u1[0].At, u1[1].At, m.OccurredAt, readAt)
	}
}

// TestFeedEntryThatCannotBeWritten: when the feed of a batch cannot be
// appended because of one event's entry, that event fails alone, with
// nothing of it stored, and its neighbours are stored with their entries.
// The database refuses the entry here through a constraint the test adds,
// on a database of its own.
func TestFeedEntryThatCannotBeWritten(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `ALTER TABLE feed_changes ADD CONSTRAINT no_poison CHECK (body->>'textContent' IS DISTINCT FROM 'poison')`); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, pool, persister.New(pool, quiet), 1)
	good := f.sent(t, f.conv, 1, 2, "fine")
	poison := f.sent(t, f.conv, 2, 1, "poison")
	late := f.sent(t, f.conv, 1, 2, "fine too")
	errs := f.p.HandleBatch(ctx, []events.Envelope{good, poison, late, f.read(t, f.conv, 2, now(), good.ID)})
	if errs[0] != nil || errs[2] != nil || errs[3] != nil || !events.IsPermanent(errs[1]) {
		t.Fatalf("outcomes %v: want only the second to fail, permanently", errs)
	}
	if _, ok := message(t, pool, poison.ID); ok {
		t.Fatal("the message whose feed entry failed is stored without it")
	}
	for _, id := range []string{good.ID, late.ID} {
		if _, ok := message(t, pool, id); !ok {
			t.Fatalf("neighbour %s is not stored", id)
		}
	}
	u1, u2 := f.feed(t, 1), f.feed(t, 2)
	if want := []string{"newMessage", "newMessage", "messageRead"}; !slices.Equal(kinds(u1), want) || !slices.Equal(kinds(u2), want) {
		t.Fatalf("feeds %v and %v, want %v", kinds(u1), kinds(u2), want)
	}
	if got := seqs(t, pool, f.conv); len(got) != 2 {
		t.Fatalf("sequences %v, want two gap-free", got)
	}
}

// TestFeedStoresEachChangeOnce: a change every participant learns of is
// stored once, whatever the size of its audience.
func TestFeedStoresEachChangeOnce(t *testing.T) {
	t.Parallel()
	_, pool := dbtest.New(t)
	f := newFixture(t, pool, persister.New(pool, quiet), 1)
	m := f.sent(t, f.conv, 1, 2, "once")
	handle(t, f.p, m, m)
	var changes, entries int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM feed_changes WHERE event_id = $1),
		(SELECT count(*) FROM user_feed f JOIN feed_changes c ON c.id = f.change_id WHERE c.event_id = $1)`, m.ID).Scan(&changes, &entries); err != nil {
		t.Fatal(err)
	}
	if changes != 1 || entries != 2 {
		t.Fatalf("%d stored changes and %d entries for one message to two users, want 1 and 2", changes, entries)
	}
}

func feedSettingsUnchanged(t *testing.T, f fixture) {
	t0 := now()
	handle(t, f.p, f.settings(t, f.conv, 1, t0, events.ConversationSettingsChangedV1{Pinned: ptr(true)}),
		f.settings(t, f.conv, 1, t0.Add(time.Second), events.ConversationSettingsChangedV1{Pinned: ptr(true)}))
	if got := kinds(f.feed(t, 1)); !slices.Equal(got, []string{"settingsChanged"}) {
		t.Fatalf("pinning a pinned conversation: feed %v, want one settingsChanged", got)
	}
	handle(t, f.p, f.settings(t, f.conv, 1, t0.Add(2*time.Second), events.ConversationSettingsChangedV1{Pinned: ptr(true), Muted: ptr(true)}))
	if u1 := f.feed(t, 1); len(u1) != 2 || u1[1].Data["muted"] != true || u1[1].Data["pinned"] != true {
		t.Fatalf("muting too: feed %v", u1)
	}
	if p := f.participant(t, f.conv, 1); !p.Pinned || !p.Muted {
		t.Fatalf("settings %+v, want pinned and muted", p)
	}
}
