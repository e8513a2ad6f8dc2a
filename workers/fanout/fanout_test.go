package fanout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/internal/gateway"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/workers/fanout"
)

var _ fanout.MediaURLs = (*media.Store)(nil)

// waitFor bounds every wait so that a broken fanout fails the test instead
// of hanging it; it is not a speed requirement.
const waitFor = 5 * time.Second

// bus records what fanout publishes.
type bus struct {
	mu     sync.Mutex
	events []events.Envelope
	err    error
}

func (b *bus) Publish(_ context.Context, evs ...events.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.events = append(b.events, evs...)
	return nil
}

func (b *bus) published() []events.Envelope {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]events.Envelope(nil), b.events...)
}

// harness is the real path: a migrated database behind pgstore, the local
// gateway on two loopback listeners (WebSocket endpoint, management API),
// and the SDK client pointed at the latter.
type harness struct {
	dbURL  string
	pool   *pgxpool.Pool
	store  *pgstore.Store
	gw     *gateway.Gateway
	wsURL  string
	admin  string
	client *apigatewaymanagementapi.Client
	bus    *bus
	// ids carries each connection id from $connect to dial.
	ids chan string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dbURL, pool := dbtest.New(t)
	h := &harness{dbURL: dbURL, pool: pool, store: pgstore.New(pool), bus: &bus{}, ids: make(chan string, 16)}
	h.gw = gateway.New(gateway.Routes{Connect: h.connect, Disconnect: h.disconnect}, gateway.Config{AdminSecret: testSecret}, testLogger(t))

	ws := httptest.NewServer(h.gw)
	admin := httptest.NewServer(h.gw.AdminHandler())
	t.Cleanup(ws.Close)
	t.Cleanup(admin.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := h.gw.Shutdown(ctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	})
	h.wsURL = "ws" + strings.TrimPrefix(ws.URL, "http")
	h.admin = admin.URL
	h.client = managementClient(t, admin.URL)
	return h
}

// connect authenticates with ?user=N: test-only, the real route checks a JWT.
func (h *harness) connect(ctx context.Context, req lambdaevents.APIGatewayWebsocketProxyRequest) (lambdaevents.APIGatewayProxyResponse, error) {
	user, err := strconv.ParseInt(req.QueryStringParameters["user"], 10, 64)
	if err != nil || user <= 0 {
		return lambdaevents.APIGatewayProxyResponse{StatusCode: http.StatusUnauthorized}, nil
	}
	now := time.Now()
	id := req.RequestContext.ConnectionID
	feed := req.QueryStringParameters["feed"] == "1"
	if err := h.store.Put(ctx, connstore.Connection{ID: id, UserID: user, ConnectedAt: now, LastPingAt: now, ExpiresAt: now.Add(time.Hour), Feed: feed}); err != nil {
		return lambdaevents.APIGatewayProxyResponse{}, err
	}
	h.ids <- id
	return lambdaevents.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

func (h *harness) disconnect(ctx context.Context, req lambdaevents.APIGatewayWebsocketProxyRequest) (lambdaevents.APIGatewayProxyResponse, error) {
	return lambdaevents.APIGatewayProxyResponse{StatusCode: http.StatusOK}, h.store.Delete(ctx, req.RequestContext.ConnectionID)
}

// testSecret is the local gateway's management secret in these tests.
const testSecret = "fanout-test-secret"

func managementClient(t *testing.T, endpoint string) *apigatewaymanagementapi.Client {
	t.Helper()
	c, err := fanout.NewManagementClient(context.Background(), endpoint, awsconf.Keys{}, testSecret)
	if err != nil {
		t.Fatalf("NewManagementClient(%s): %v", endpoint, err)
	}
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fanout returns a Fanout over the harness; poster nil means the SDK client.
func (h *harness) fanout(t *testing.T, poster fanout.Poster, m fanout.MediaURLs) *fanout.Fanout {
	if poster == nil {
		poster = h.client
	}
	return fanout.New(h.store, poster, h.bus, m, testLogger(t))
}

// device is one live WebSocket client.
type device struct {
	h  *harness
	ws *websocket.Conn
	id string
}

func (h *harness) dial(t *testing.T, user int64) *device {
	t.Helper()
	return h.dialQuery(t, user, "")
}

// dialQuery dials with more query parameters (query: "&k=v").
func (h *harness) dialQuery(t *testing.T, user int64, query string) *device {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(h.wsURL+"?user="+strconv.FormatInt(user, 10)+query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial user %d: %v (status %d)", user, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	select {
	case id := <-h.ids:
		return &device{h: h, ws: ws, id: id}
	case <-time.After(waitFor):
		t.Fatal("no $connect recorded")
		return nil
	}
}

// read returns the next frame.
func (d *device) read(t *testing.T) []byte {
	t.Helper()
	_ = d.ws.SetReadDeadline(time.Now().Add(waitFor))
	typ, b, err := d.ws.ReadMessage()
	if err != nil {
		t.Fatalf("device %s: read: %v", d.id, err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("device %s: frame type %d, want text", d.id, typ)
	}
	return b
}

// expectNothing checks that no frame was sent to d so far: a marker posted
// now must be the next frame, since the gateway keeps a connection's frames
// in order.
func (d *device) expectNothing(t *testing.T) {
	t.Helper()
	const marker = `{"type":"marker"}`
	if _, err := d.h.client.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(d.id), Data: []byte(marker),
	}); err != nil {
		t.Fatalf("post marker: %v", err)
	}
	if got := d.read(t); string(got) != marker {
		t.Errorf("device %s got %s, want no frame", d.id, got)
	}
}

// expectJSON reads a frame and compares it with want as JSON values: same
// keys, same values, nothing more.
func (d *device) expectJSON(t *testing.T, want string) {
	t.Helper()
	got := d.read(t)
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("device %s: frame %s: %v", d.id, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("device %s got\n %s\nwant\n %s", d.id, got, want)
	}
}

func envelope(t *testing.T, actor int64, conversationID string, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(uuid.Must(uuid.NewV7()).String(), time.Now(), actor, conversationID, p)
	if err != nil {
		t.Fatalf("envelope: %v", err)
	}
	return e
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

var createdAt = time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)

func textMessage(sender, recipient int64, source string) events.MessageSentV1 {
	return events.MessageSentV1{
		MessageID:          newID(),
		ConversationID:     newID(),
		SenderID:           sender,
		RecipientID:        recipient,
		ContentType:        events.ContentText,
		TextContent:        "hello",
		ClientMessageID:    "c-1",
		CreatedAt:          createdAt,
		SourceConnectionID: source,
	}
}

func newMessageJSON(m events.MessageSentV1) string {
	return fmt.Sprintf(`{"type":"newMessage","data":{"id":%q,"conversationId":%q,"senderId":%d,"recipientId":%d,`+
		`"contentType":"text","textContent":"hello","clientMessageId":"c-1","createdAt":"2026-03-01T12:00:00.123Z"}}`,
		m.MessageID, m.ConversationID, m.SenderID, m.RecipientID)
}

func handle(t *testing.T, f *fanout.Fanout, e events.Envelope) {
	t.Helper()
	if err := f.Handle(context.Background(), e); err != nil {
		t.Fatalf("Handle %s: %v", e.Type, err)
	}
}

// pushRequests returns the PushRequested events published so far.
func pushRequests(t *testing.T, b *bus) []events.PushRequestedV1 {
	t.Helper()
	var out []events.PushRequestedV1
	for _, e := range b.published() {
		if e.Type != events.TypePushRequested {
			continue
		}
		var p events.PushRequestedV1
		if err := e.Unmarshal(&p); err != nil {
			t.Fatalf("published %s: %v", e.Type, err)
		}
		out = append(out, p)
	}
	return out
}

// delivered returns the MessageDelivered events published so far.
func delivered(t *testing.T, b *bus) []events.MessageDeliveredV1 {
	t.Helper()
	var out []events.MessageDeliveredV1
	for _, e := range b.published() {
		if e.Type != events.TypeMessageDelivered {
			continue
		}
		var d events.MessageDeliveredV1
		if err := e.Unmarshal(&d); err != nil {
			t.Fatalf("published %s: %v", e.Type, err)
		}
		out = append(out, d)
	}
	return out
}

func TestMessageSentReachesRecipientDevicesAndSenderOtherDevices(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	senderSource, senderOther := h.dial(t, 1), h.dial(t, 1)
	phone, tablet := h.dial(t, 2), h.dial(t, 2)
	bystander := h.dial(t, 3)

	m := textMessage(1, 2, senderSource.id)
	m.ReplyToID = newID()
	m.AudioDuration = aws.Int32(0) // not omitted: set by the sender
	e := envelope(t, 1, m.ConversationID, m)
	before := time.Now()
	handle(t, f, e)

	want := fmt.Sprintf(`{"type":"newMessage","data":{"id":%q,"conversationId":%q,"senderId":1,"recipientId":2,`+
		`"contentType":"text","textContent":"hello","audioDuration":0,"replyToId":%q,"clientMessageId":"c-1",`+
		`"createdAt":"2026-03-01T12:00:00.123Z"}}`, m.MessageID, m.ConversationID, m.ReplyToID)
	phone.expectJSON(t, want)
	tablet.expectJSON(t, want)
	senderOther.expectJSON(t, want)
	bystander.expectNothing(t)

	pub := h.bus.published()
	if len(pub) != 1 || pub[0].Type != events.TypeMessageDelivered {
		t.Fatalf("published %+v, want one MessageDelivered", pub)
	}
	if pub[0].ID == e.ID || !events.IsUUID(pub[0].ID) || pub[0].ConversationID != m.ConversationID {
		t.Errorf("delivered envelope id %q conversation %q", pub[0].ID, pub[0].ConversationID)
	}
	d := delivered(t, h.bus)[0]
	if d.MessageID != m.MessageID || d.ConversationID != m.ConversationID || d.SenderID != 1 || d.RecipientID != 2 || d.DeliveredAt.Before(before.Add(-time.Second)) {
		t.Errorf("delivered %+v", d)
	}
	// Every device of the sender, the sending one included, gets the
	// receipt; the sending one gets nothing else.
	receipt := fmt.Sprintf(`{"type":"messageDelivered","data":{"messageId":%q,"conversationId":%q,"deliveredAt":%q}}`,
		m.MessageID, m.ConversationID, d.DeliveredAt.UTC().Format(time.RFC3339Nano))
	senderSource.expectJSON(t, receipt)
	senderOther.expectJSON(t, receipt)
	senderSource.expectNothing(t)

	t.Run("redelivery sends again and publishes the same event id", func(t *testing.T) {
		handle(t, f, e)
		phone.expectJSON(t, want)
		tablet.expectJSON(t, want)
		senderOther.expectJSON(t, want)
		pub := h.bus.published()
		if len(pub) != 2 || pub[1].ID != pub[0].ID {
			t.Errorf("published ids %v, want the same id twice", ids(pub))
		}
	})
}

func ids(es []events.Envelope) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func TestMessageSentMediaURL(t *testing.T) {
	h := newHarness(t)
	// Presigning is computed locally: the endpoint is never contacted.
	store, err := media.New(context.Background(), media.Config{
		Bucket: "chat-media", Endpoint: "http://127.0.0.1:9", PathStyle: true, Local: true,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f := h.fanout(t, nil, store)
	phone := h.dial(t, 2)

	m := textMessage(1, 2, "")
	m.ContentType, m.TextContent = events.ContentImage, ""
	m.MediaKey = media.Key(1, time.Now(), "jpg")
	handle(t, f, envelope(t, 1, m.ConversationID, m))

	var got struct {
		Type string
		Data map[string]any
	}
	if err := json.Unmarshal(phone.read(t), &got); err != nil {
		t.Fatal(err)
	}
	u, _ := got.Data["mediaUrl"].(string)
	parsed, err := url.Parse(u)
	if err != nil || !strings.HasSuffix(parsed.Path, "/chat-media/"+m.MediaKey) || parsed.Query().Get("X-Amz-Signature") == "" {
		t.Errorf("mediaUrl %q, want a presigned URL of %s", u, m.MediaKey)
	}
	delete(got.Data, "mediaUrl")
	want := map[string]any{
		"id": m.MessageID, "conversationId": m.ConversationID, "senderId": 1.0, "recipientId": 2.0,
		"contentType": "image", "mediaKey": m.MediaKey, "clientMessageId": "c-1", "createdAt": "2026-03-01T12:00:00.123Z",
	}
	if got.Type != "newMessage" || !reflect.DeepEqual(got.Data, want) {
		t.Errorf("got %+v, want data %v", got, want)
	}
}

// A message no recipient device received gets no receipt but a push
// request, the same one on every delivery of the message.
func TestMessageSentWithoutOnlineRecipientRequestsAPush(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	source, other := h.dial(t, 1), h.dial(t, 1)

	m := textMessage(1, 2, source.id)
	e := envelope(t, 1, m.ConversationID, m)
	handle(t, f, e)
	handle(t, f, e) // a redelivery

	other.expectJSON(t, newMessageJSON(m))
	source.expectNothing(t)
	pub := h.bus.published()
	if len(pub) != 2 || pub[0].ID != pub[1].ID {
		t.Fatalf("published %v, want the same push request twice", ids(pub))
	}
	p := pushRequests(t, h.bus)
	if len(p) != 2 || p[0].MessageID != m.MessageID || p[0].RecipientID != 2 || p[0].TextContent != m.TextContent || !p[0].CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("push requests %+v, want message %s to user 2", p, m.MessageID)
	}
	if d := delivered(t, h.bus); len(d) != 0 {
		t.Errorf("receipts %+v, want none", d)
	}
}

// A message withheld from its recipient (who blocks the sender) is never
// pushed.
func TestWithheldMessageRequestsNoPush(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	m := textMessage(1, 2, "")
	m.WithheldFromRecipient = true
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	if pub := h.bus.published(); len(pub) != 0 {
		t.Errorf("published %v, want nothing for a withheld message", ids(pub))
	}
}

// A message that reached its recipient requests no push.
func TestDeliveredMessageRequestsNoPush(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	phone := h.dial(t, 2)
	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	phone.expectJSON(t, newMessageJSON(m))
	if p := pushRequests(t, h.bus); len(p) != 0 {
		t.Errorf("push requests %+v, want none: the recipient is online", p)
	}
	if d := delivered(t, h.bus); len(d) != 1 {
		t.Errorf("receipts %+v, want one", d)
	}
}

func TestMessageSentPublishFailureIsReturned(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	phone := h.dial(t, 2)
	h.bus.err = errors.New("bus down")

	m := textMessage(1, 2, "")
	err := f.Handle(context.Background(), envelope(t, 1, m.ConversationID, m))
	if !errors.Is(err, h.bus.err) {
		t.Errorf("Handle: %v, want the publish error", err)
	}
	phone.expectJSON(t, newMessageJSON(m))
}

func TestTypingReachesRecipientOnly(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	typist, typistOther := h.dial(t, 1), h.dial(t, 1)
	recipient := h.dial(t, 2)

	ty := events.TypingV1{ConversationID: newID(), UserID: 1, RecipientID: 2, IsTyping: false}
	handle(t, f, envelope(t, 1, ty.ConversationID, ty))
	recipient.expectJSON(t, fmt.Sprintf(`{"type":"typing","data":{"conversationId":%q,"userId":1,"isTyping":false}}`, ty.ConversationID))
	typist.expectNothing(t)
	typistOther.expectNothing(t)
}

func TestMessageReadReachesNotifiedUsersAndReader(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	sender, reader, readerOther := h.dial(t, 1), h.dial(t, 2), h.dial(t, 2)
	bystander := h.dial(t, 3)

	r := events.MessageReadV1{
		ConversationID: newID(), ReaderID: 2, MessageIDs: []string{newID(), newID()},
		ReadAt: createdAt, NotifyUserIDs: []int64{1},
	}
	handle(t, f, envelope(t, 2, r.ConversationID, r))
	want := fmt.Sprintf(`{"type":"messageRead","data":{"conversationId":%q,"readerId":2,"messageIds":[%q,%q],"readAt":"2026-03-01T12:00:00.123Z"}}`,
		r.ConversationID, r.MessageIDs[0], r.MessageIDs[1])
	sender.expectJSON(t, want)
	reader.expectJSON(t, want)
	readerOther.expectJSON(t, want)
	bystander.expectNothing(t)
}

func TestThumbnailReadyReachesBothParticipants(t *testing.T) {
	h := newHarness(t)
	store, err := media.New(context.Background(), media.Config{
		Bucket: "chat-media", Endpoint: "http://127.0.0.1:9", PathStyle: true, Local: true,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f := h.fanout(t, nil, store)
	sender, recipient := h.dial(t, 1), h.dial(t, 2)

	key := media.Key(1, time.Now(), "mp4")
	tr := events.ThumbnailReadyV1{
		MessageID: newID(), ConversationID: newID(), SenderID: 1, RecipientID: 2,
		MediaKey: key, ThumbnailKey: media.ThumbnailKey(key), Width: 320, Height: 180, AudioDuration: aws.Int32(7),
	}
	handle(t, f, envelope(t, 1, tr.ConversationID, tr))
	for _, d := range []*device{sender, recipient} {
		var got struct {
			Type string
			Data map[string]any
		}
		if err := json.Unmarshal(d.read(t), &got); err != nil {
			t.Fatal(err)
		}
		u, _ := got.Data["mediaThumbnailUrl"].(string)
		if !strings.Contains(u, tr.ThumbnailKey) || !strings.Contains(u, "X-Amz-Signature=") {
			t.Errorf("mediaThumbnailUrl %q, want a presigned URL of %s", u, tr.ThumbnailKey)
		}
		delete(got.Data, "mediaThumbnailUrl")
		want := map[string]any{"messageId": tr.MessageID, "conversationId": tr.ConversationID, "audioDuration": 7.0}
		if got.Type != "messageUpdated" || !reflect.DeepEqual(got.Data, want) {
			t.Errorf("device %s got %+v", d.id, got)
		}
	}

	t.Run("without media the URL is omitted", func(t *testing.T) {
		handle(t, h.fanout(t, nil, nil), envelope(t, 1, tr.ConversationID, tr))
		want := fmt.Sprintf(`{"type":"messageUpdated","data":{"messageId":%q,"conversationId":%q,"audioDuration":7}}`, tr.MessageID, tr.ConversationID)
		sender.expectJSON(t, want)
		recipient.expectJSON(t, want)
	})

	// The update of a message withheld from a recipient who blocks its
	// sender goes to the sender only.
	t.Run("withheld", func(t *testing.T) {
		withheld := tr
		withheld.WithheldFromRecipient = true
		handle(t, h.fanout(t, nil, nil), envelope(t, 1, tr.ConversationID, withheld))
		sender.expectJSON(t, fmt.Sprintf(`{"type":"messageUpdated","data":{"messageId":%q,"conversationId":%q,"audioDuration":7}}`, tr.MessageID, tr.ConversationID))
		recipient.expectNothing(t)
	})
}

func TestConnectedGreetsTheConnection(t *testing.T) {
	h := newHarness(t)
	// The management API also answers under /{stage}, as a callback URL
	// does on AWS.
	client := managementClient(t, h.admin+"/local")
	f := h.fanout(t, client, nil)
	d, other := h.dial(t, 1), h.dial(t, 1)

	handle(t, f, envelope(t, 1, "", events.ConnectedV1{ConnectionID: d.id, UserID: 1}))
	d.expectJSON(t, `{"type":"connected","message":"WebSocket connection established"}`)
	other.expectNothing(t)
}

func TestGoneConnectionIsDeleted(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	live := h.dial(t, 2)
	ctx := context.Background()

	// A connection whose $disconnect never ran: recorded, unknown to the
	// gateway, which answers 410.
	old := time.Now().Add(-time.Hour)
	stale := connstore.Connection{ID: "c3RhbGUtY29ubg=", UserID: 2, ConnectedAt: old, LastPingAt: old, ExpiresAt: time.Now().Add(time.Hour)}
	if err := h.store.Put(ctx, stale); err != nil {
		t.Fatal(err)
	}

	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	live.expectJSON(t, newMessageJSON(m))
	if _, err := h.store.Get(ctx, stale.ID); !errors.Is(err, connstore.ErrNotFound) {
		t.Errorf("stale connection: Get = %v, want ErrNotFound", err)
	}
	if _, err := h.store.Get(ctx, live.id); err != nil {
		t.Errorf("live connection: %v", err)
	}
	if n := len(h.bus.published()); n != 1 {
		t.Errorf("published %d events, want 1 MessageDelivered", n)
	}

	t.Run("a new connection's record is kept", func(t *testing.T) {
		// API Gateway answers 410 until a connection's handshake is done,
		// so a fresh record may belong to a device still connecting.
		now := time.Now()
		fresh := connstore.Connection{ID: "ZnJlc2gtY29ubg=", UserID: 2, ConnectedAt: now, LastPingAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := h.store.Put(ctx, fresh); err != nil {
			t.Fatal(err)
		}
		handle(t, f, envelope(t, 1, m.ConversationID, m))
		live.expectJSON(t, newMessageJSON(m))
		if _, err := h.store.Get(ctx, fresh.ID); err != nil {
			t.Errorf("fresh connection: %v", err)
		}
	})
}

// throttlingFront stands in front of the management API and answers the
// first calls with API Gateway's throttling responses, which the local
// gateway never sends: the modeled 429 LimitExceededException, then an
// unmodeled 429 from its front door.
func throttlingFront(t *testing.T, h *harness, throttled int32, calls *atomic.Int32) string {
	t.Helper()
	admin := h.gw.AdminHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n > throttled {
			admin.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if n%2 == 1 {
			w.Header().Set("x-amzn-ErrorType", "LimitExceededException")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"message":"Limit Exceeded"}`))
			return
		}
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"message":"Too Many Requests"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestThrottledPostIsRetried(t *testing.T) {
	h := newHarness(t)
	var calls atomic.Int32
	poster := &countingPoster{Poster: managementClient(t, throttlingFront(t, h, 2, &calls))}
	f := h.fanout(t, poster, nil)
	phone := h.dial(t, 2)

	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	phone.expectJSON(t, newMessageJSON(m))
	// As many SDK calls as requests: fanout retried, and the SDK did not
	// retry throttling on top of it.
	if n, p := calls.Load(), poster.calls.Load(); n != 3 || p != 3 {
		t.Errorf("%d requests from %d SDK calls, want 3 from 3 (two throttled, one delivered)", n, p)
	}
	if n := len(h.bus.published()); n != 1 {
		t.Errorf("published %d events, want 1 MessageDelivered", n)
	}

	t.Run("retries stop when the context ends", func(t *testing.T) {
		calls.Store(-1000) // throttle everything from now on
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := f.Handle(ctx, envelope(t, 1, m.ConversationID, m))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Handle: %v, want the context's error", err)
		}
	})
}

type countingPoster struct {
	fanout.Poster
	calls atomic.Int32
}

func (p *countingPoster) PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	p.calls.Add(1)
	return p.Poster.PostToConnection(ctx, in, optFns...)
}

// failingPoster fails every post to one connection with an error the local
// gateway never returns for a live connection.
type failingPoster struct {
	fanout.Poster
	fail  string
	calls atomic.Int32
}

func (p *failingPoster) PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	if aws.ToString(in.ConnectionId) == p.fail {
		p.calls.Add(1)
		return nil, &types.ForbiddenException{Message: aws.String("Forbidden")}
	}
	return p.Poster.PostToConnection(ctx, in, optFns...)
}

func TestFailingConnectionDoesNotBlockOthers(t *testing.T) {
	h := newHarness(t)
	broken, working := h.dial(t, 2), h.dial(t, 2)
	poster := &failingPoster{Poster: h.client, fail: broken.id}
	f := h.fanout(t, poster, nil)

	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	working.expectJSON(t, newMessageJSON(m))
	broken.expectNothing(t)
	if n := poster.calls.Load(); n != 1 {
		t.Errorf("%d posts to the failing connection, want 1 (not retried)", n)
	}
	if _, err := h.store.Get(context.Background(), broken.id); err != nil {
		t.Errorf("failing connection's record: %v, want it kept", err)
	}
	if n := len(h.bus.published()); n != 1 {
		t.Errorf("published %d events, want 1 MessageDelivered", n)
	}
}

func TestInvalidPayload(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	for _, typ := range []string{events.TypeMessageSent, events.TypeMessageRead, events.TypeTyping,
		events.TypeThumbnailReady, events.TypeConnected} {
		e := events.Envelope{ID: newID(), Type: typ, Version: 1, OccurredAt: time.Now(), Data: json.RawMessage(`{"message_id":"x"}`)}
		if err := f.Handle(context.Background(), e); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: Handle = %v, want ErrInvalid", typ, err)
		}
	}
}

func TestUnknownTypeIsIgnored(t *testing.T) {
	h := newHarness(t)
	f := h.fanout(t, nil, nil)
	e := events.Envelope{ID: newID(), Type: events.TypeMessageDeleted, Version: 1, OccurredAt: time.Now(), Data: json.RawMessage(`{}`)}
	if err := f.Handle(context.Background(), e); err != nil {
		t.Errorf("Handle: %v", err)
	}
}

func TestConnectionLookupFailureIsReturned(t *testing.T) {
	h := newHarness(t)
	pool, err := pgxpool.New(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close() // every query now fails
	f := fanout.New(pgstore.New(pool), h.client, h.bus, nil, testLogger(t))

	m := textMessage(1, 2, "")
	if err := f.Handle(context.Background(), envelope(t, 1, m.ConversationID, m)); err == nil {
		t.Error("Handle succeeded with an unreachable connection store")
	}
	if n := len(h.bus.published()); n != 0 {
		t.Errorf("published %d events", n)
	}
}

func TestNewManagementClient(t *testing.T) {
	// No region from the environment or a profile: it comes from the URL.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "credentials"))
	c, err := fanout.NewManagementClient(context.Background(), "https://abc123.execute-api.eu-west-1.amazonaws.com/prod", awsconf.Keys{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Options().Region; r != "eu-west-1" {
		t.Errorf("region %q, want eu-west-1", r)
	}
	if _, err := fanout.NewManagementClient(context.Background(), "http://127.0.0.1:8081", awsconf.Keys{}, ""); err == nil {
		t.Error("a local gateway endpoint without its secret was accepted")
	}
	for _, bad := range []string{"", "127.0.0.1:8081", "ftp://127.0.0.1/", "http://"} {
		if _, err := fanout.NewManagementClient(context.Background(), bad, awsconf.Keys{}, testSecret); err == nil {
			t.Errorf("NewManagementClient(%q) succeeded", bad)
		}
	}
}

// TestExpiredTokenConnectionIsClosed is what closes a connection whose
// token expired on API Gateway, which has no timer for it: the first push
// meant for it sends the frame saying why instead, then closes it.
func TestExpiredTokenConnectionIsClosed(t *testing.T) {
	h := newHarness(t)
	const expiredFrame = `{"type":"error","code":"unauthenticated","message":"expired"}`
	f := fanout.New(h.store, h.client, h.bus, nil, testLogger(t), fanout.WithExpiredFrame([]byte(expiredFrame)))
	live, expired := h.dial(t, 2), h.dial(t, 2)
	ctx := context.Background()
	rec, err := h.store.Get(ctx, expired.id)
	if err != nil {
		t.Fatal(err)
	}
	rec.TokenExpiresAt = time.Now().Add(-time.Second)
	if err := h.store.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}

	m := textMessage(1, 2, "")
	handle(t, f, envelope(t, 1, m.ConversationID, m))
	live.expectJSON(t, newMessageJSON(m))
	if got := string(expired.read(t)); got != expiredFrame {
		t.Fatalf("expired connection got %s, want the expiry frame and nothing else", got)
	}
	_ = expired.ws.SetReadDeadline(time.Now().Add(waitFor))
	if _, _, err := expired.ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("expired connection: %v, want it closed", err)
	}
}
