package notifier_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/push"
	"github.com/parleychat/parley/internal/push/pushtest"
	"github.com/parleychat/parley/workers/notifier"
	"github.com/parleychat/parley/workers/persister"
)

// Real parts: PostgreSQL, the persister storing the messages, and the real
// provider clients against local servers speaking Expo's, APNs's and FCM's
// protocols.

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

type fixture struct {
	pool       *pgxpool.Pool
	q          *db.Queries
	store      *persister.Persister
	expo       *pushtest.Expo
	apns       *pushtest.APNs
	fcm        *pushtest.FCM
	expoClient *push.Expo
	n          *notifier.Notifier
	base       int64
	conv       uuid.UUID
	clock      time.Time
}

func newFixture(t *testing.T, cfg notifier.Config) *fixture {
	t.Helper()
	_, pool := dbtest.New(t)
	f := &fixture{pool: pool, q: db.New(pool), store: persister.New(pool, quiet),
		expo: pushtest.NewExpo(t), apns: pushtest.NewAPNs(t), fcm: pushtest.NewFCM(t)}
	f.base = time.Now().UnixNano() % 1e12
	var err error
	if f.expoClient, err = push.NewExpo(f.expo.URL(), "", nil); err != nil {
		t.Fatal(err)
	}
	apns, err := push.NewAPNs(push.APNsConfig{URL: f.apns.URL(), KeyPEM: f.apns.KeyPEM(t), KeyID: f.apns.KeyID, TeamID: f.apns.TeamID, Topic: "chat.parley.app"}, f.apns.Client())
	if err != nil {
		t.Fatal(err)
	}
	fcm, err := push.NewFCM(f.fcm.URL(), f.fcm.Credentials(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	noWait := push.DefaultRetry()
	noWait.Sleep = func(context.Context, time.Duration) error { return nil }
	f.expoClient.SetRetry(noWait)
	apns.SetRetry(noWait)
	fcm.SetRetry(noWait)
	router := push.Router{push.PlatformExpo: f.expoClient, push.PlatformIOS: apns, push.PlatformAndroid: fcm}
	f.n = notifier.New(pool, router, f.expoClient, cfg, quiet)
	f.clock = time.Now()
	f.n.SetClock(func() time.Time { return f.clock })
	f.conv, _, err = db.GetOrCreateDirect(context.Background(), pool, uuid.Must(uuid.NewV7()), f.u(1), f.u(2))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) u(n int64) int64 { return f.base + n }

func (f *fixture) register(t *testing.T, user int64, platform, token string) {
	t.Helper()
	if err := f.q.UpsertPushDevice(context.Background(), db.UpsertPushDeviceParams{Token: token, UserID: f.u(user), Platform: platform}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) devices(t *testing.T, user int64) []string {
	t.Helper()
	ds, err := f.q.ListPushDevices(context.Background(), []int64{f.u(user)})
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, d := range ds {
		tokens = append(tokens, d.Token)
	}
	return tokens
}

// message stores a message from u(1) to u(2) through the persister and
// returns the push request fanout would publish for it.
func (f *fixture) message(t *testing.T, content, text string) (events.Envelope, events.Envelope) {
	t.Helper()
	id, at := uuid.Must(uuid.NewV7()).String(), time.Now().UTC().Truncate(time.Microsecond)
	m := events.MessageSentV1{MessageID: id, ConversationID: f.conv.String(), SenderID: f.u(1), RecipientID: f.u(2),
		ContentType: content, TextContent: text, CreatedAt: at}
	if content != events.ContentText {
		m.MediaKey = "chat/1/" + id + ".bin"
	}
	sent, err := events.New(id, at, f.u(1), f.conv.String(), m)
	if err != nil {
		t.Fatal(err)
	}
	req, err := events.New(uuid.NewString(), at, f.u(1), f.conv.String(), events.PushRequestedV1{
		MessageID: id, ConversationID: m.ConversationID, SenderID: m.SenderID, RecipientID: m.RecipientID,
		ContentType: content, TextContent: text, CreatedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return sent, req
}

func (f *fixture) store1(t *testing.T, e events.Envelope) {
	t.Helper()
	if err := f.store.Handle(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) handle(t *testing.T, envs ...events.Envelope) []error {
	t.Helper()
	return f.n.HandleBatch(context.Background(), envs)
}

func mustHandle(t *testing.T, f *fixture, envs ...events.Envelope) {
	t.Helper()
	for i, err := range f.handle(t, envs...) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}

const iosToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

func TestOfflineRecipientGetsOnePushPerMessageOnEveryDevice(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	f.register(t, 2, push.PlatformIOS, iosToken)
	f.register(t, 2, push.PlatformAndroid, "fcm:tablet")
	f.register(t, 1, push.PlatformExpo, "ExponentPushToken[sender]")

	sent, req := f.message(t, events.ContentText, "Olá! Como vai?")
	f.store1(t, sent)
	mustHandle(t, f, req)
	mustHandle(t, f, req) // a redelivery
	mustHandle(t, f, req) // and a replay

	expo := f.expo.Messages()
	if len(expo) != 1 {
		t.Fatalf("%d Expo pushes, want 1", len(expo))
	}
	m := expo[0]
	if m.To != "ExponentPushToken[phone]" || m.Title != "New message" || m.Body != "Olá! Como vai?" || *m.Badge != 1 ||
		m.Data["conversation_id"] != f.conv.String() || m.Data["message_id"] != sent.ID || m.Data["seq"] != "1" {
		t.Errorf("expo push %+v", m)
	}
	apns := f.apns.Requests()
	if len(apns) != 1 || apns[0].CollapseID != f.conv.String() || apns[0].Payload["seq"] != "1" {
		t.Errorf("APNs pushes %+v, want one collapsing per conversation", apns)
	}
	fcm := f.fcm.Messages()
	if len(fcm) != 1 || fcm[0]["android"].(map[string]any)["collapse_key"] != f.conv.String() {
		t.Errorf("FCM pushes %+v, want one collapsing per conversation", fcm)
	}

	// The badge is the total unread count.
	photo, req2 := f.message(t, events.ContentImage, "")
	f.store1(t, photo)
	mustHandle(t, f, req2)
	expo = f.expo.Messages()
	if len(expo) != 2 || *expo[1].Badge != 2 || expo[1].Body != "📷 Photo" || expo[1].Data["seq"] != "2" {
		t.Errorf("second push %+v, want badge 2, a photo, seq 2", expo[len(expo)-1])
	}
}

func TestMutedReadUnsentAndOldMessagesAreNotPushed(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")

	// Read on another device before the push went out.
	sent, req := f.message(t, events.ContentText, "read already")
	f.store1(t, sent)
	at := time.Now().UTC()
	read, _ := events.New(uuid.NewString(), at, f.u(2), f.conv.String(), events.MessageReadV1{ConversationID: f.conv.String(), ReaderID: f.u(2), MessageIDs: []string{sent.ID}, ReadAt: at})
	f.store1(t, read)
	mustHandle(t, f, req)

	// Unsent by its sender before the push went out.
	gone, goneReq := f.message(t, events.ContentText, "unsent already")
	f.store1(t, gone)
	unsent, _ := events.New(uuid.NewString(), at, f.u(1), f.conv.String(), events.MessageUnsentV1{MessageID: gone.ID,
		ConversationID: f.conv.String(), SenderID: f.u(1), ContentType: events.ContentText, UnsentAt: time.Now().UTC(), Deadline: at.Add(events.DefaultUnsendWindow),
		ParticipantIDs: []int64{f.u(1), f.u(2)}})
	f.store1(t, unsent)
	mustHandle(t, f, goneReq)

	// Too old: a replay long after.
	old, oldReq := f.message(t, events.ContentText, "old")
	f.store1(t, old)
	f.clock = time.Now().Add(2 * time.Hour)
	mustHandle(t, f, oldReq)
	f.clock = time.Now()

	// Muted.
	yes := true
	muted, _ := events.New(uuid.NewString(), at, f.u(2), f.conv.String(), events.ConversationSettingsChangedV1{ConversationID: f.conv.String(), UserID: f.u(2), Muted: &yes, ChangedAt: at})
	f.store1(t, muted)
	m3, req3 := f.message(t, events.ContentText, "muted")
	f.store1(t, m3)
	mustHandle(t, f, req3)

	if got := f.expo.Messages(); len(got) != 0 {
		t.Errorf("pushed %+v, want nothing", got)
	}
}

func TestMessageNotStoredYetIsRetried(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	sent, req := f.message(t, events.ContentText, "early")
	errs := f.handle(t, req)
	if errs[0] == nil || events.IsPermanent(errs[0]) || !strings.Contains(errs[0].Error(), "not stored yet") {
		t.Fatalf("before the persister: %v, want a retryable error", errs[0])
	}
	f.store1(t, sent)
	mustHandle(t, f, req)
	if got := f.expo.Messages(); len(got) != 1 {
		t.Errorf("%d pushes after the retry, want 1", len(got))
	}
}

func TestInvalidPayloadIsPermanentAndSparesTheBatch(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	sent, req := f.message(t, events.ContentText, "fine")
	f.store1(t, sent)
	bad := req
	bad.Data = []byte(`{"message_id":"nope"}`)
	errs := f.handle(t, bad, req)
	if !events.IsPermanent(errs[0]) || errs[1] != nil {
		t.Errorf("errors %v, want a permanent one for the bad event only", errs)
	}
	if got := f.expo.Messages(); len(got) != 1 {
		t.Errorf("%d pushes, want the good event's one", len(got))
	}
}

func TestInvalidTokensDeleteTheirDevices(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	gone := strings.Repeat("ab", 32)
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[gone]")
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	f.register(t, 2, push.PlatformIOS, gone)
	f.register(t, 2, push.PlatformAndroid, "fcm:gone")
	f.expo.Invalidate("ExponentPushToken[gone]")
	f.apns.Invalidate(gone)
	f.fcm.Invalidate("fcm:gone")

	sent, req := f.message(t, events.ContentText, "hi")
	f.store1(t, sent)
	mustHandle(t, f, req)
	if got := f.devices(t, 2); len(got) != 1 || got[0] != "ExponentPushToken[phone]" {
		t.Errorf("devices left %v, want only the valid one", got)
	}
	if got := f.expo.Messages(); len(got) != 1 || got[0].To != "ExponentPushToken[phone]" {
		t.Errorf("pushed %+v", got)
	}
}

func TestRetryableFailureRetriesOnlyWhatFailed(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	f.register(t, 2, push.PlatformIOS, iosToken)
	sent, req := f.message(t, events.ContentText, "hi")
	f.store1(t, sent)
	f.expo.Fail(3) // every attempt of this delivery
	errs := f.handle(t, req)
	if errs[0] == nil || events.IsPermanent(errs[0]) {
		t.Fatalf("Expo down: %v, want a retryable error", errs[0])
	}
	mustHandle(t, f, req) // the queue's retry
	if got := f.expo.Messages(); len(got) != 1 {
		t.Errorf("%d Expo pushes, want 1 after the retry", len(got))
	}
	if got := f.apns.Requests(); len(got) != 1 {
		t.Errorf("%d APNs pushes, want 1: the retry does not push again where it worked", len(got))
	}
}

func TestReadUpdatesTheBadgeSilently(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	f.register(t, 2, push.PlatformIOS, iosToken)
	var ids []string
	for range 3 {
		sent, _ := f.message(t, events.ContentText, "hi")
		f.store1(t, sent)
		ids = append(ids, sent.ID)
	}
	at := time.Now().UTC()
	// Two of three read, not stored by the persister yet.
	read, _ := events.New(uuid.NewString(), at, f.u(2), f.conv.String(), events.MessageReadV1{ConversationID: f.conv.String(), ReaderID: f.u(2), MessageIDs: ids[:2], ReadAt: at})
	mustHandle(t, f, read)
	expo := f.expo.Messages()
	if len(expo) != 1 || !expo[0].ContentAvailable || expo[0].Title != "" || expo[0].Body != "" || *expo[0].Badge != 1 {
		t.Fatalf("badge update %+v, want a silent push with badge 1", expo)
	}
	if apns := f.apns.Requests(); len(apns) != 1 || apns[0].PushType != "background" || apns[0].Payload["aps"].(map[string]any)["badge"] != float64(1) {
		t.Errorf("APNs badge update %+v", apns)
	}
	// Stored now: the same answer.
	f.store1(t, read)
	mustHandle(t, f, read)
	if expo := f.expo.Messages(); len(expo) != 2 || *expo[1].Badge != 1 {
		t.Errorf("after the read is stored: %+v, want badge 1 again", expo[len(expo)-1])
	}
}

func TestReceiptsDeleteUnregisteredDevices(t *testing.T) {
	f := newFixture(t, notifier.DefaultConfig())
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[uninstalled]")
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	f.expo.UnregisterLater("ExponentPushToken[uninstalled]")
	sent, req := f.message(t, events.ContentText, "hi")
	f.store1(t, sent)
	mustHandle(t, f, req)
	if err := f.n.CheckReceipts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.devices(t, 2); len(got) != 2 {
		t.Fatalf("devices %v: receipts were checked before they were due", got)
	}
	f.clock = time.Now().Add(20 * time.Minute)
	if err := f.n.CheckReceipts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.devices(t, 2); len(got) != 1 || got[0] != "ExponentPushToken[phone]" {
		t.Errorf("devices %v, want the uninstalled one gone", got)
	}
}

func TestNoPreviewAndTitleTemplate(t *testing.T) {
	cfg := notifier.DefaultConfig()
	cfg.Preview, cfg.Title = false, "Message from user {sender_id}"
	f := newFixture(t, cfg)
	f.register(t, 2, push.PlatformExpo, "ExponentPushToken[phone]")
	sent, req := f.message(t, events.ContentText, "a secret")
	f.store1(t, sent)
	mustHandle(t, f, req)
	got := f.expo.Messages()
	if len(got) != 1 {
		t.Fatalf("pushes %+v, want 1", got)
	}
	if want := "Message from user " + strconv.FormatInt(f.u(1), 10); got[0].Title != want || strings.Contains(got[0].Title+got[0].Body, "secret") {
		t.Errorf("title %q body %q, want %q and no preview", got[0].Title, got[0].Body, want)
	}
}
