package notifier_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/push"
	"github.com/parleychat/parley/internal/push/pushtest"
	"github.com/parleychat/parley/workers/notifier"
)

// group is a group of u(1) (its owner, who sends), u(2) and u(3), stored
// through the persister as the GroupChanged event of its creation.
type group struct {
	f    *fixture
	id   uuid.UUID
	t0   time.Time
	next int // milliseconds after t0 of the next event
}

func (f *fixture) group(t *testing.T) *group {
	t.Helper()
	g := &group{f: f, id: uuid.Must(uuid.NewV7()), t0: time.Now().UTC().Truncate(time.Millisecond)}
	a, b, c := f.u(1), f.u(2), f.u(3)
	created, err := events.New(uuid.Must(uuid.NewV7()).String(), g.t0, a, g.id.String(), events.GroupChangedV1{
		ConversationID: g.id.String(), ActorID: a, Action: events.GroupCreated, Title: "Trip",
		UserIDs: []int64{a, b, c}, MemberIDs: []int64{a, b, c}, At: g.t0})
	if err != nil {
		t.Fatal(err)
	}
	f.store1(t, created)
	return g
}

// at is a time after every earlier event of the group's.
func (g *group) at() time.Time {
	g.next++
	return g.t0.Add(time.Duration(g.next) * time.Millisecond)
}

// message stores a text message of u(1) to the group (its other members
// u(2) and u(3)) and returns it with the push requests fanout would publish
// for the given members, each with RecipientID that member.
func (g *group) message(t *testing.T, text string, offline ...int64) (events.Envelope, map[int64]events.Envelope) {
	t.Helper()
	f := g.f
	id, at := uuid.Must(uuid.NewV7()).String(), g.at()
	sent, err := events.New(id, at, f.u(1), g.id.String(), events.MessageSentV1{
		MessageID: id, ConversationID: g.id.String(), SenderID: f.u(1), ContentType: events.ContentText,
		TextContent: text, CreatedAt: at, MemberIDs: []int64{f.u(2), f.u(3)}})
	if err != nil {
		t.Fatal(err)
	}
	f.store1(t, sent)
	reqs := map[int64]events.Envelope{}
	for _, u := range offline {
		req, err := events.New(uuid.NewString(), at, f.u(1), g.id.String(), events.PushRequestedV1{
			MessageID: id, ConversationID: g.id.String(), SenderID: f.u(1), RecipientID: f.u(u),
			ContentType: events.ContentText, TextContent: text, CreatedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		reqs[u] = req
	}
	return sent, reqs
}

// read stores, through the persister, that member u read the messages.
func (g *group) read(t *testing.T, u int64, msgs ...events.Envelope) {
	t.Helper()
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	at := g.at()
	read, err := events.New(uuid.NewString(), at, g.f.u(u), g.id.String(), events.MessageReadV1{
		ConversationID: g.id.String(), ReaderID: g.f.u(u), MessageIDs: ids, ReadAt: at, Group: true})
	if err != nil {
		t.Fatal(err)
	}
	g.f.store1(t, read)
}

// seq is a stored message's sequence in its conversation.
func (f *fixture) seq(t *testing.T, msg events.Envelope) int64 {
	t.Helper()
	var seq int64
	if err := f.pool.QueryRow(context.Background(), `SELECT seq FROM messages WHERE id = $1`, msg.ID).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// readSeq is member u's read position in the group.
func (g *group) readSeq(t *testing.T, u int64) int64 {
	t.Helper()
	var seq int64
	if err := g.f.pool.QueryRow(context.Background(), `SELECT last_read_seq FROM conversation_participants
		WHERE conversation_id = $1 AND user_id = $2`, g.id, g.f.u(u)).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	return seq
}

// pushesTo are the Expo pushes after the first skip ones, by device token.
func pushesTo(f *fixture, skip int) map[string][]pushtest.ExpoMessage {
	out := map[string][]pushtest.ExpoMessage{}
	for _, m := range f.expo.Messages()[min(skip, len(f.expo.Messages())):] {
		out[m.To] = append(out[m.To], m)
	}
	return out
}

const (
	groupSenderToken = "ExponentPushToken[group-a]"
	groupBToken      = "ExponentPushToken[group-b]"
	groupCToken      = "ExponentPushToken[group-c]"
)

// checkPush checks the one push a device got for a group message.
func checkPush(t *testing.T, got map[string][]pushtest.ExpoMessage, token string, g *group, msg events.Envelope, seq int64, text string, badge int) {
	t.Helper()
	if len(got[token]) != 1 {
		t.Errorf("%s got %d pushes for message seq %d, want 1: %+v", token, len(got[token]), seq, got[token])
		return
	}
	m := got[token][0]
	if m.Body != text || m.Data["type"] != "message" || m.Data["conversation_id"] != g.id.String() ||
		m.Data["message_id"] != msg.ID || m.Data["seq"] != strconv.FormatInt(seq, 10) || m.ContentAvailable {
		t.Errorf("%s: push %+v, want the group message %s (seq %d, %q)", token, m, msg.ID, seq, text)
	}
	if m.Badge == nil {
		t.Errorf("%s: no badge, want %d (the group's unread messages)", token, badge)
	} else if *m.Badge != badge {
		t.Errorf("%s: badge %d, want %d (the group's unread messages)", token, *m.Badge, badge)
	}
}

// TestGroupPushPerMemberReadPositionAndMute: fanout asks for a group
// message's push once per offline member, with that member as RecipientID.
// Each member is pushed on their own devices, with their own badge (the
// group's messages after their read position); a member whose read
// position is at or past the message, or who muted the group, is not
// pushed, and that decides nothing for another member.
func TestGroupPushPerMemberReadPositionAndMute(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig()) // previews on: a body names its message
	f.register(t, 1, push.PlatformExpo, groupSenderToken)
	f.register(t, 2, push.PlatformExpo, groupBToken)
	f.register(t, 3, push.PlatformExpo, groupCToken)
	f.register(t, 3, push.PlatformIOS, iosToken)
	g := f.group(t)

	// m1: both offline members are pushed, each on their own devices only.
	m1, reqs := g.message(t, "first", 2, 3)
	seq1 := f.seq(t, m1)
	if seq1 != 2 { // 1 is the group's "created"
		t.Fatalf("m1 is at seq %d, want 2", seq1)
	}
	mustHandle(t, f, reqs[2], reqs[3])
	mustHandle(t, f, reqs[2], reqs[3]) // a redelivery pushes nothing again
	got := pushesTo(f, 0)
	if len(got[groupSenderToken]) != 0 || len(f.expo.Messages()) != 2 {
		t.Fatalf("pushes %+v: want one to B's and one to C's Expo device, none to the sender's", f.expo.Messages())
	}
	checkPush(t, got, groupBToken, g, m1, seq1, "first", 1)
	checkPush(t, got, groupCToken, g, m1, seq1, "first", 1)
	if apns := f.apns.Requests(); len(apns) != 1 || apns[0].Token != iosToken || apns[0].Payload["message_id"] != m1.ID {
		t.Errorf("APNs pushes %+v, want one to C's iPhone for m1", apns)
	}

	// C reads m1; m2 is after C's read position, so both are pushed: C's
	// badge counts m2 only, B's both unread messages.
	g.read(t, 3, m1)
	if rs := g.readSeq(t, 3); rs != seq1 {
		t.Fatalf("C's read position %d after reading m1, want %d", rs, seq1)
	}
	m2, reqs := g.message(t, "second", 2, 3)
	seq2 := f.seq(t, m2)
	since := len(f.expo.Messages())
	mustHandle(t, f, reqs[2], reqs[3])
	got = pushesTo(f, since)
	checkPush(t, got, groupBToken, g, m2, seq2, "second", 2)
	checkPush(t, got, groupCToken, g, m2, seq2, "second", 1)

	// m3 read by C (on another device) before its push went out: C's read
	// position is at m3's seq. C is not pushed; B is.
	m3, reqs := g.message(t, "third", 2, 3)
	seq3 := f.seq(t, m3)
	g.read(t, 3, m3)
	if rs := g.readSeq(t, 3); rs != seq3 {
		t.Fatalf("C's read position %d after reading m3, want %d", rs, seq3)
	}
	before, since := len(f.apns.Requests()), len(f.expo.Messages())
	mustHandle(t, f, reqs[3], reqs[2])
	got = pushesTo(f, since)
	if len(got[groupCToken]) != 0 || len(f.apns.Requests()) != before {
		t.Errorf("C read m3 before its push, yet was pushed: %+v, %d APNs pushes", got[groupCToken], len(f.apns.Requests())-before)
	}
	checkPush(t, got, groupBToken, g, m3, seq3, "third", 3)

	// m4 and m5 arrive, C reads m5: C's position is past m4, not pushed.
	m4, reqs4 := g.message(t, "fourth", 2, 3)
	m5, _ := g.message(t, "fifth")
	g.read(t, 3, m5)
	if rs := g.readSeq(t, 3); rs != f.seq(t, m5) {
		t.Fatalf("C's read position %d after reading m5, want %d", rs, f.seq(t, m5))
	}
	since = len(f.expo.Messages())
	mustHandle(t, f, reqs4[3], reqs4[2])
	got = pushesTo(f, since)
	if len(got[groupCToken]) != 0 {
		t.Errorf("C's read position is past m4, yet C was pushed: %+v", got[groupCToken])
	}
	checkPush(t, got, groupBToken, g, m4, f.seq(t, m4), "fourth", 5) // m1 to m5

	// B mutes the group: B is not pushed, C (unmuted, m6 unread) is.
	yes := true
	at := g.at()
	muted, err := events.New(uuid.NewString(), at, f.u(2), g.id.String(), events.ConversationSettingsChangedV1{
		ConversationID: g.id.String(), UserID: f.u(2), Muted: &yes, ChangedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	f.store1(t, muted)
	m6, reqs := g.message(t, "sixth", 2, 3)
	since = len(f.expo.Messages())
	mustHandle(t, f, reqs[2], reqs[3])
	got = pushesTo(f, since)
	if len(got[groupBToken]) != 0 {
		t.Errorf("B muted the group, yet was pushed: %+v", got[groupBToken])
	}
	checkPush(t, got, groupCToken, g, m6, f.seq(t, m6), "sixth", 1)
}

// TestGroupReadUpdatesTheBadgeSilently: a group read handled before the
// persister stored it already leaves the read messages out of the badge,
// as a direct read does (TestReadUpdatesTheBadgeSilently).
func TestGroupReadUpdatesTheBadgeSilently(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	g := f.group(t)
	var msgs []events.Envelope
	for range 3 {
		m, _ := g.message(t, "hi")
		msgs = append(msgs, m)
	}
	at := g.at()
	// The first two read, not stored by the persister yet.
	read, err := events.New(uuid.NewString(), at, f.u(2), g.id.String(), events.MessageReadV1{
		ConversationID: g.id.String(), ReaderID: f.u(2), MessageIDs: []string{msgs[0].ID, msgs[1].ID}, ReadAt: at, Group: true})
	if err != nil {
		t.Fatal(err)
	}
	mustHandle(t, f, read)
	expo := f.expo.Messages()
	if len(expo) != 1 || !expo[0].ContentAvailable || expo[0].Body != "" || *expo[0].Badge != 1 {
		t.Fatalf("badge update %+v, want a silent push with badge 1", expo)
	}
	f.store1(t, read)
	mustHandle(t, f, read)
	if expo := f.expo.Messages(); len(expo) != 2 || *expo[1].Badge != 1 {
		t.Errorf("after the read is stored: %+v, want badge 1 again", expo[len(expo)-1])
	}
}
