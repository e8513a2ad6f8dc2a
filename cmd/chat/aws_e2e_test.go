package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebfake"
	"github.com/parleychat/parley/events/sqs/sqstest"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/connstore/dynamostore/dynalitetest"
	"github.com/parleychat/parley/internal/push/pushtest"
	"github.com/parleychat/parley/internal/s3local"
	"github.com/parleychat/parley/internal/wsproto"
)

// The AWS transport, offline. Everything is a real protocol server except
// EventBridge, for which no emulator exists: ebfake stands in for it,
// applying the same rules (events.Routes) and delivering to real SQS queues.

const (
	testBucket    = "parley-media"
	testConnTable = "parley-test-connections"
)

// awsLocal is the AWS side of one deployment: goaws (SQS) with one queue and
// one dead-letter queue per worker, ebfake (EventBridge) routing to them,
// dynalite (DynamoDB) for live connections and an embedded S3.
type awsLocal struct {
	sqsEndpoint  string
	sqs          *awssqs.Client
	queues, dlqs map[string]string // worker → queue URL
	bus          *ebfake.Fake
	busURL       string
	dynamo       string
	s3URL        string
	expo         *pushtest.Expo // the notifier's Expo push service
}

func startAWSLocal(t *testing.T) *awsLocal {
	t.Helper()
	var specs []sqstest.QueueSpec
	for _, w := range events.Workers() {
		// A short visibility timeout so that a failed event comes back soon;
		// three receives before the dead-letter queue, as a transient
		// failure (an event that overtook the one it depends on) may need.
		specs = append(specs, sqstest.QueueSpec{Name: w, VisibilityTimeout: 2, DLQ: w + "-dlq", MaxReceiveCount: 3})
	}
	l := &awsLocal{queues: map[string]string{}, dlqs: map[string]string{}}
	l.sqsEndpoint, l.sqs = sqstest.StartGoaws(t, specs...)
	for _, w := range events.Workers() {
		l.queues[w] = sqstest.QueueURL(t, l.sqs, w)
		l.dlqs[w] = sqstest.QueueURL(t, l.sqs, w+"-dlq")
	}
	bus, err := ebfake.New(l.sqs, l.queues)
	if err != nil {
		t.Fatal(err)
	}
	l.bus = bus
	ebSrv := httptest.NewServer(bus)
	t.Cleanup(ebSrv.Close)
	l.busURL = ebSrv.URL

	l.dynamo = dynalitetest.Start(t)

	s3srv, err := s3local.New(t.TempDir(), s3local.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3srv.EnsureBucket(context.Background(), testBucket); err != nil {
		t.Fatal(err)
	}
	s3 := httptest.NewServer(s3srv)
	t.Cleanup(s3.Close)
	l.s3URL = s3.URL
	l.expo = pushtest.NewExpo(t)
	return l
}

// vars is the configuration every process of the deployment shares; a
// worker adds its own CHAT_QUEUE_URL.
func (l *awsLocal) vars() []string {
	return []string{
		"CHAT_TRANSPORT=aws",
		"CHAT_EVENTBRIDGE_ENDPOINT=" + l.busURL,
		"CHAT_EVENT_BUS_NAME=parley-test",
		"CHAT_SQS_ENDPOINT=" + l.sqsEndpoint,
		"CHAT_CONNECTIONS_TABLE=" + testConnTable,
		"CHAT_DYNAMODB_ENDPOINT=" + l.dynamo,
		"CHAT_S3_ENDPOINT=" + l.s3URL,
		"CHAT_S3_BUCKET=" + testBucket,
		"CHAT_EXPO_PUSH_URL=" + l.expo.URL(),
	}
}

// startAWS runs migrate, the API, the gateway and one process per worker on
// the AWS transport. It returns the API's env and the gateway's (same
// deployment, another HTTP address).
func startAWS(t *testing.T, l *awsLocal) (apiEnv, gwEnv *env) {
	t.Helper()
	e := newEnv(t)
	e.extra = l.vars()
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	e.waitHTTP(e.start("api"))
	gw := e.gatewayView()
	gw.waitHTTP(gw.start("gateway"))
	for _, w := range events.Workers() {
		we := *e
		we.extra = append(slices.Clone(e.extra), "CHAT_QUEUE_URL="+l.queues[w])
		we.start("worker", w)
	}
	return e, gw
}

// TestAWSTransport runs the real binary as separate processes on the AWS
// transport and shows the chat behaves as on the local one: real-time
// delivery, receipts, typing and thumbnails; sends survive partial PutEvents
// failures with every message stored once; a poison record is dead-lettered
// by SQS while its worker goes on.
func TestAWSTransport(t *testing.T) {
	l := startAWSLocal(t)
	e, gw := startAWS(t, l)

	// The greeting comes from fanout: $connect → EventBridge → fanout's
	// queue → fanout → the gateway's management API.
	a, b := gw.dial(1), gw.dial(2)

	// A sends over WebSocket: ack to A, newMessage to B, then messageDelivered to A.
	a.send(map[string]any{"action": "sendMessage", "data": map[string]any{"recipientId": 2, "contentType": "text", "textContent": "over ws on aws", "clientMessageId": "aws-ws-1"}})
	ack := a.expect("acknowledgment", nil)
	msgID, _ := ack["messageId"].(string)
	conv, _ := ack["conversationId"].(string)
	if msgID == "" || conv == "" {
		t.Fatalf("acknowledgment without ids: %v", ack)
	}
	got := b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == msgID })
	if d := data(got); d["conversationId"] != conv || d["textContent"] != "over ws on aws" || d["senderId"] != float64(1) {
		t.Fatalf("newMessage data = %v", d)
	}
	a.expect("messageDelivered", func(f map[string]any) bool { return data(f)["messageId"] == msgID })

	// A sends over REST.
	rest := e.send(1, 2, "over rest on aws")
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == rest.ID })
	a.expect("messageDelivered", func(f map[string]any) bool { return data(f)["messageId"] == rest.ID })

	// B types; A sees it.
	b.send(map[string]any{"action": "typing", "data": map[string]any{"conversationId": conv, "recipientId": 1, "isTyping": true}})
	if d := data(a.expect("typing", nil)); d["conversationId"] != conv || d["userId"] != float64(2) || d["isTyping"] != true {
		t.Fatalf("typing data = %v", d)
	}

	// B marks read: A gets messageRead, the row shows read_at.
	e.messages(2, conv, 2)
	b.send(map[string]any{"action": "markRead", "data": map[string]any{"conversationId": conv, "messageIds": []string{msgID}}})
	b.expect("readAcknowledgment", nil)
	if ids, _ := data(a.expect("messageRead", nil))["messageIds"].([]any); len(ids) != 1 || ids[0] != msgID {
		t.Fatal("messageRead does not name the message")
	}
	// SQS does not keep order, so the WebSocket message need not have the
	// first sequence: find it by id.
	waitUntil(t, "read_at and delivered_at are stored", func() bool {
		for _, m := range e.messages(1, conv, 2) {
			if m.ID == msgID {
				return m.ReadAt != nil && m.DeliveredAt != nil
			}
		}
		return false
	})

	// An image: uploaded to S3, sent, thumbnailed by the thumbnailer, which
	// publishes ThumbnailReady: the persister records it, fanout pushes it.
	img := e.sendImage(1, 2, testJPEG(t, 640, 480))
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == img.ID })
	for _, c := range []*wsClient{a, b} {
		upd := c.expect("messageUpdated", func(f map[string]any) bool { return data(f)["messageId"] == img.ID })
		if u, _ := data(upd)["mediaThumbnailUrl"].(string); !strings.HasPrefix(u, l.s3URL) {
			t.Fatalf("messageUpdated thumbnail URL %q is not on the S3 endpoint", u)
		}
	}
	var thumbURL string
	waitUntil(t, "the listing shows the thumbnail", func() bool {
		for _, m := range e.messages(2, conv, 3) {
			if m.ID == img.ID && m.ThumbnailURL != nil {
				thumbURL = *m.ThumbnailURL
				return true
			}
		}
		return false
	})
	if w, h := jpegSize(t, thumbURL); w != 320 || h != 240 {
		t.Fatalf("thumbnail is %dx%d, want 320x240", w, h)
	}
	sent := 3

	// EventBridge refuses some entries (InternalFailure): every send still
	// succeeds, because the publisher retries the refused entries, and
	// nothing is stored twice.
	t.Run("partial PutEvents failures", func(t *testing.T) {
		mark := len(l.bus.Requests())
		// Each send publishes one event and makes up to five attempts: four
		// refusals can delay a send but never fail it.
		const injected = 4
		l.bus.FailNext(injected)
		const n = 12
		ids := make([]string, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []string
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					from := int64(1 + i%2)
					var m message
					code := e.call(from, "POST", "/messages", map[string]any{"recipient_id": 3 - from, "content_type": "text", "text_content": fmt.Sprintf("through failures %d", i)}, &m)
					mu.Lock()
					if code != http.StatusOK {
						failures = append(failures, fmt.Sprintf("send %d: status %d", i, code))
					}
					ids[i] = m.ID
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("sends failed under injected PutEvents failures: %v", failures)
		}
		sent += n
		all := e.messages(1, conv, sent)
		assertStoredOnce(t, all, ids, sent)

		// Every refused entry was sent again, and nothing else was: a
		// retry resends the refused entries only, with the same detail.
		waitUntil(t, "every refused entry is retried", func() bool {
			return retries(l.bus.Requests()[mark:]) >= injected
		})
		if n := retries(l.bus.Requests()[mark:]); n != injected {
			t.Fatalf("%d entries were sent again, want exactly the %d refused ones", n, injected)
		}
	})

	// One PutEvents request of two entries (reads in two conversations)
	// whose first entry is refused: only that entry is sent again.
	t.Run("partial batch retry", func(t *testing.T) {
		other := e.send(3, 2, "from a third user")
		waitUntil(t, "everything sent so far is delivered and stored", func() bool {
			for _, m := range append(e.messages(1, conv, sent), e.messages(2, other.ConversationID, 1)...) {
				if m.DeliveredAt == nil {
					return false
				}
			}
			return true
		})
		// Idle now: the next PutEvents request is the read's.
		mark := len(l.bus.Requests())
		l.bus.FailNext(1)
		if code := e.call(2, "POST", "/messages/read", map[string]any{"message_ids": []string{rest.ID, other.ID}}, nil); code != http.StatusOK {
			t.Fatalf("mark read in two conversations: status %d", code)
		}
		// The persister's feed announcements (of the accepted read, while
		// the refused one waits for its retry) are requests of their own.
		reqs := slices.DeleteFunc(slices.Clone(l.bus.Requests()[mark:]), func(r []ebfake.Entry) bool {
			return len(r) > 0 && r[0].DetailType == events.TypeFeedAppended
		})
		if len(reqs) < 2 || len(reqs[0]) != 2 || len(reqs[1]) != 1 || reqs[1][0].Detail != reqs[0][0].Detail {
			t.Fatalf("want a request of two entries, then one resending only the refused first entry; got %s", describeRequests(reqs))
		}
		for _, r := range reqs[:2] {
			for _, en := range r {
				if en.DetailType != events.TypeMessageRead {
					t.Fatalf("unexpected %s entry among the read's requests", en.DetailType)
				}
			}
		}
		waitUntil(t, "both reads are stored", func() bool {
			var restRead, otherRead bool
			for _, m := range e.messages(2, conv, sent) {
				restRead = restRead || (m.ID == rest.ID && m.ReadAt != nil)
			}
			for _, m := range e.messages(2, other.ConversationID, 1) {
				otherRead = otherRead || (m.ID == other.ID && m.ReadAt != nil)
			}
			return restRead && otherRead
		})
	})

	// A record that is not an event at all, put straight on the persister's
	// queue, ends in its dead-letter queue after maxReceiveCount receives;
	// messages sent meanwhile are stored.
	t.Run("poison record to the DLQ", func(t *testing.T) {
		const poison = `{"version":"0","id":"9b0c","detail-type":"MessageSent","source":"parley.chat","detail":{"id":` // cut short
		if _, err := l.sqs.SendMessage(context.Background(), &awssqs.SendMessageInput{
			QueueUrl: aws.String(l.queues[events.WorkerPersister]), MessageBody: aws.String(poison),
		}); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for i := range 3 {
			ids = append(ids, e.send(1, 2, fmt.Sprintf("after the poison %d", i)).ID)
		}
		sent += len(ids)
		assertStoredOnce(t, e.messages(1, conv, sent), ids, sent)

		var dead []string
		waitUntil(t, "the poison record reaches the persister's DLQ", func() bool {
			for _, m := range sqstest.Drain(t, l.sqs, l.dlqs[events.WorkerPersister], 0) {
				dead = append(dead, aws.ToString(m.Body))
			}
			return len(dead) > 0
		})
		if len(dead) != 1 || dead[0] != poison {
			t.Fatalf("persister DLQ holds %q, want only the poison record", dead)
		}
		for _, w := range []string{events.WorkerFanout, events.WorkerThumbnailer} {
			if msgs := sqstest.Drain(t, l.sqs, l.dlqs[w], 0); len(msgs) > 0 {
				t.Errorf("%s DLQ holds %d messages, want none: %s", w, len(msgs), aws.ToString(msgs[0].Body))
			}
		}
	})

	// A recipient with no live connection is pushed: fanout's PushRequested
	// goes through EventBridge to the notifier's queue and Lambda-style
	// consumer, which sends it to a local server speaking Expo's protocol.
	t.Run("push to an offline recipient", func(t *testing.T) {
		const token = "ExponentPushToken[on-aws]"
		if code := e.call(9, "POST", "/devices", map[string]any{"platform": "expo", "token": token}, nil); code != http.StatusOK {
			t.Fatalf("register: status %d", code)
		}
		m := e.send(1, 9, "are you there?")
		waitUntil(t, "the push reaches Expo", func() bool { return len(pushesFor(l.expo, m.ID)) > 0 })
		if got := pushesFor(l.expo, m.ID); len(got) != 1 || got[0].To != token || got[0].Body != "are you there?" || got[0].Data["seq"] != "1" {
			t.Errorf("pushes %+v, want one to %s with the preview and seq 1", got, token)
		}
	})

	// A device in feed mode: the persister's announcement goes through
	// EventBridge to fanout's queue, and the message comes as a feedChange
	// frame with its position, confirmed to the sender from there.
	t.Run("feed mode", func(t *testing.T) {
		fd := gw.dialFeed(7)
		m := e.send(1, 7, "to a feed device")
		f := fd.expect(wsproto.TypeFeedChange, func(f map[string]any) bool {
			d, _ := data(f)["data"].(map[string]any)
			return data(f)["kind"] == wsproto.TypeNewMessage && d["id"] == m.ID
		})
		changes, epoch := e.rawSync(7, 0)
		var pos any
		for _, c := range changes {
			if d, _ := c["data"].(map[string]any); c["kind"] == wsproto.TypeNewMessage && d["id"] == m.ID {
				pos = c["position"]
			}
		}
		if pos == nil || data(f)["position"] != pos || f["epoch"] != float64(epoch) {
			t.Fatalf("frame %v; the feed has the message at position %v in epoch %d", f, pos, epoch)
		}
		fd.quiet(wsproto.TypeNewMessage, 300*time.Millisecond)
		waitUntil(t, "the delivery through the feed is stored", func() bool {
			ms := e.messages(1, m.ConversationID, 1)
			return len(ms) == 1 && ms[0].DeliveredAt != nil
		})
	})
}

// assertStoredOnce checks a conversation's listing: sequences 1..want with
// no gap or duplicate, and each of ids present exactly once.
func assertStoredOnce(t *testing.T, all []message, ids []string, want int) {
	t.Helper()
	if len(all) != want {
		t.Fatalf("%d messages stored, want %d", len(all), want)
	}
	seen := map[string]int{}
	for i, m := range all {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: gap or duplicate", i, m.Seq)
		}
		seen[m.ID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Fatalf("message %q stored %d times, want once", id, seen[id])
		}
	}
}

// retries counts entries sent more than once across requests: each resend
// of a refused entry carries the same detail (the event's id is in it).
func retries(reqs [][]ebfake.Entry) int {
	seen := map[string]int{}
	for _, r := range reqs {
		for _, en := range r {
			seen[en.Detail]++
		}
	}
	n := 0
	for _, c := range seen {
		n += c - 1
	}
	return n
}

func describeRequests(reqs [][]ebfake.Entry) string {
	var parts []string
	for _, r := range reqs {
		var types []string
		for _, en := range r {
			types = append(types, en.DetailType)
		}
		parts = append(parts, "["+strings.Join(types, ",")+"]")
	}
	return strings.Join(parts, " ")
}

// sendImage uploads file as user over REST and sends it as an image message.
func (e *env) sendImage(user, to int64, file []byte) message {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "photo.jpg")
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := fw.Write(file); err != nil {
		e.t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+e.http+"/api/v1/chat/upload", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+e.token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var up chat.UploadView
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &up) != nil {
		e.t.Fatalf("upload: status %d: %s", resp.StatusCode, raw)
	}
	return e.post(user, map[string]any{"recipient_id": to, "content_type": "image", "media_url": up.URL})
}

// testJPEG is a w×h photo-like JPEG (a gradient).
func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jpegSize fetches a JPEG and returns its dimensions.
func jpegSize(t *testing.T, url string) (w, h int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	cfg, err := jpeg.DecodeConfig(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not a JPEG: %v", url, err)
	}
	return cfg.Width, cfg.Height
}

// TestReplayOnAWS: with CHAT_TRANSPORT=aws, chat replay starts an
// EventBridge archive replay filtered to the worker's rule, and needs no
// database. Missing settings are named.
func TestReplayOnAWS(t *testing.T) {
	bus, err := ebfake.New(nil, nil) // no rules: only StartReplay is used
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(bus)
	t.Cleanup(srv.Close)
	const (
		archive = "arn:aws:events:us-east-1:123456789012:archive/parley-prod-events"
		busARN  = "arn:aws:events:us-east-1:123456789012:event-bus/parley-prod"
		prefix  = "arn:aws:events:us-east-1:123456789012:rule/parley-prod/parley-prod-"
	)
	// No database: an operator runs replay with AWS credentials only.
	base := []string{
		"CHAT_TRANSPORT=aws", "CHAT_EVENTBRIDGE_ENDPOINT=" + srv.URL,
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?sslmode=disable",
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}
	full := append(slices.Clone(base), "CHAT_EVENT_ARCHIVE_ARN="+archive, "CHAT_EVENT_BUS_ARN="+busARN, "CHAT_RULE_ARN_PREFIX="+prefix)

	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	until := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	out, code := runChat(t, full, "replay", "--worker", "persister", "--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("replay exited %d:\n%s", code, out)
	}
	reps := bus.Replays()
	if len(reps) != 1 {
		t.Fatalf("%d StartReplay calls, want 1", len(reps))
	}
	r := reps[0]
	if r.EventSourceArn != archive || r.DestinationArn != busARN || len(r.FilterArns) != 1 || r.FilterArns[0] != prefix+"persister" ||
		!r.EventStartTime.Equal(since) || !r.EventEndTime.Equal(until) {
		t.Fatalf("StartReplay request = %+v", r)
	}
	if !strings.HasPrefix(r.ReplayName, "persister-") || !strings.Contains(out, "started replay "+r.ReplayName) {
		t.Fatalf("output does not name the replay %s:\n%s", r.ReplayName, out)
	}

	// A duration for --since and no --until: until now.
	if out, code := runChat(t, full, "replay", "--worker", "thumbnailer", "--since", "2h"); code != 0 {
		t.Fatalf("replay --since 2h exited %d:\n%s", code, out)
	}
	r = bus.Replays()[1]
	if r.FilterArns[0] != prefix+"thumbnailer" || time.Since(r.EventEndTime) > time.Minute || r.EventEndTime.Sub(r.EventStartTime) < 2*time.Hour-time.Minute {
		t.Fatalf("StartReplay request = %+v", r)
	}

	for _, missing := range []string{"CHAT_EVENT_ARCHIVE_ARN", "CHAT_EVENT_BUS_ARN", "CHAT_RULE_ARN_PREFIX"} {
		var vars []string
		for _, v := range full {
			if !strings.HasPrefix(v, missing+"=") {
				vars = append(vars, v)
			}
		}
		out, code := runChat(t, vars, "replay", "--worker", "persister", "--since", "1h")
		if code == 0 || !strings.Contains(out, missing) {
			t.Fatalf("without %s: exit %d, output:\n%s", missing, code, out)
		}
	}
	if out, code := runChat(t, append(slices.Clone(base), "CHAT_EVENT_ARCHIVE_ARN="+archive, "CHAT_EVENT_BUS_ARN="+busARN, "CHAT_RULE_ARN_PREFIX=parley-prod-"),
		"replay", "--worker", "persister", "--since", "1h"); code == 0 || !strings.Contains(out, "CHAT_RULE_ARN_PREFIX") {
		t.Fatalf("with a rule name instead of an ARN prefix: exit %d, output:\n%s", code, out)
	}
	if n := len(bus.Replays()); n != 2 {
		t.Fatalf("%d replays started, want 2: invalid settings must start none", n)
	}
}

// runChat runs the binary with exactly vars as its environment and returns
// its combined output and exit code.
func runChat(t *testing.T, vars []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(chatBin, args...)
	cmd.Env = vars
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

// TestDeadLettersPurgeOnAWS: on the AWS transport `chat deadletters purge`
// empties the dead-letter queue CHAT_DEAD_LETTER_QUEUE_URL names, and
// refuses to purge one message by id (SQS cannot) or without the queue.
func TestDeadLettersPurgeOnAWS(t *testing.T) {
	endpoint, client := sqstest.StartGoaws(t, sqstest.QueueSpec{Name: "fanout", DLQ: "fanout-dlq"})
	dlq := sqstest.QueueURL(t, client, "fanout-dlq")
	ctx := context.Background()
	for i := range 3 {
		if _, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	waiting := func() int {
		out, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(dlq),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
		return n
	}
	if n := waiting(); n != 3 {
		t.Fatalf("%d messages in the dead-letter queue before the purge, want 3", n)
	}
	e := newEnv(t)
	e.extra = []string{"CHAT_TRANSPORT=aws", "CHAT_SQS_ENDPOINT=" + endpoint}
	if code := runCmd(t, e, "deadletters", "purge"); code == 0 {
		t.Error("purge without CHAT_DEAD_LETTER_QUEUE_URL succeeded")
	}
	e.extra = append(e.extra, "CHAT_DEAD_LETTER_QUEUE_URL="+dlq)
	if code := runCmd(t, e, "deadletters", "purge", "7"); code == 0 {
		t.Error("purging one message by id succeeded on SQS")
	}
	if n := waiting(); n != 3 {
		t.Fatalf("%d messages in the dead-letter queue after refused purges, want 3", n)
	}
	if out := chatOutput(t, e, "deadletters", "purge"); !strings.Contains(out, "purged "+dlq) {
		t.Fatalf("purge: %q", out)
	}
	waitUntil(t, "the dead-letter queue is empty", func() bool { return waiting() == 0 })
}

// TestDeadLettersListAndRedriveOnAWS: on the AWS transport `chat
// deadletters list` shows the messages of CHAT_DEAD_LETTER_QUEUE_URL and
// leaves them there; `redrive ID` moves one, by its SQS message id, and
// `redrive` the rest, to CHAT_QUEUE_URL with the same bodies. No database is
// needed.
func TestDeadLettersListAndRedriveOnAWS(t *testing.T) {
	endpoint, client := sqstest.StartGoaws(t, sqstest.QueueSpec{Name: "fanout", DLQ: "fanout-dlq"})
	source, dlq := sqstest.QueueURL(t, client, "fanout"), sqstest.QueueURL(t, client, "fanout-dlq")
	ctx := context.Background()
	bodies := map[string]string{} // SQS message id → body
	var ids []string
	evs := map[string]string{} // SQS message id → event id
	for range 3 {
		conv := uuid.NewString()
		env, err := events.New(uuid.NewString(), time.Now(), 1, conv, events.TypingV1{ConversationID: conv, UserID: 1, RecipientID: 2, IsTyping: true})
		if err != nil {
			t.Fatal(err)
		}
		body := sqstest.EventBridgeBody(t, env)
		out, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(body)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.MessageId)
		bodies[id], evs[id] = body, env.ID
		ids = append(ids, id)
	}
	base := []string{
		"CHAT_TRANSPORT=aws", "CHAT_SQS_ENDPOINT=" + endpoint,
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?sslmode=disable",
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}
	withDLQ := append(slices.Clone(base), "CHAT_DEAD_LETTER_QUEUE_URL="+dlq)
	full := append(slices.Clone(withDLQ), "CHAT_QUEUE_URL="+source)

	if out, code := runChat(t, base, "deadletters", "list"); code == 0 || !strings.Contains(out, "CHAT_DEAD_LETTER_QUEUE_URL") {
		t.Fatalf("list without CHAT_DEAD_LETTER_QUEUE_URL: exit %d:\n%s", code, out)
	}
	if out, code := runChat(t, withDLQ, "deadletters", "--all", "list"); code == 0 || !strings.Contains(out, "--all") {
		t.Fatalf("list --all: exit %d:\n%s", code, out)
	}
	for range 2 { // a listing deletes nothing and hides nothing for long
		out, code := runChat(t, withDLQ, "deadletters", "list")
		if code != 0 {
			t.Fatalf("list exited %d:\n%s", code, out)
		}
		for id, ev := range evs {
			if !strings.Contains(out, id+"  ") || !strings.Contains(out, ev) || !strings.Contains(out, events.TypeTyping) {
				t.Fatalf("list does not show message %s (event %s):\n%s", id, ev, out)
			}
		}
	}

	for _, c := range []struct {
		vars    []string
		missing string
	}{{base, "CHAT_DEAD_LETTER_QUEUE_URL"}, {withDLQ, "CHAT_QUEUE_URL"}} {
		if out, code := runChat(t, c.vars, "deadletters", "redrive"); code == 0 || !strings.Contains(out, c.missing) {
			t.Fatalf("redrive without %s: exit %d:\n%s", c.missing, code, out)
		}
	}
	if out, code := runChat(t, full, "deadletters", "redrive", ids[0]); code != 0 || !strings.Contains(out, "moved 1 messages") {
		t.Fatalf("redrive %s: exit %d:\n%s", ids[0], code, out)
	}
	if got := sqstest.Drain(t, client, source, 0); len(got) != 1 || aws.ToString(got[0].Body) != bodies[ids[0]] {
		t.Fatalf("the worker's queue got %d messages, want the body of %s", len(got), ids[0])
	}
	if out, code := runChat(t, full, "deadletters", "redrive"); code != 0 || !strings.Contains(out, "moved 2 messages") {
		t.Fatalf("redrive: exit %d:\n%s", code, out)
	}
	var got, want []string
	for _, m := range sqstest.Drain(t, client, source, 0) {
		got = append(got, aws.ToString(m.Body))
	}
	for _, id := range ids[1:] {
		want = append(want, bodies[id])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the worker's queue got %q, want %q", got, want)
	}
	if left := sqstest.Drain(t, client, dlq, 0); len(left) != 0 {
		t.Fatalf("%d messages left in the dead-letter queue", len(left))
	}
}

// TestStatusOnAWS: with CHAT_TRANSPORT=aws `chat status` reads the SQS
// attributes of CHAT_QUEUE_URL and CHAT_DEAD_LETTER_QUEUE_URL, shows the
// age and consumers SQS cannot tell as "-", and without CHAT_QUEUE_URL
// says it needs it. No database is needed.
func TestStatusOnAWS(t *testing.T) {
	endpoint, client := sqstest.StartGoaws(t, sqstest.QueueSpec{Name: "parley-dev-fanout", DLQ: "parley-dev-fanout-dlq"})
	source, dlq := sqstest.QueueURL(t, client, "parley-dev-fanout"), sqstest.QueueURL(t, client, "parley-dev-fanout-dlq")
	ctx := context.Background()
	for url, n := range map[string]int{source: 2, dlq: 1} {
		for range n {
			if _, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("{}")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	base := []string{
		"CHAT_TRANSPORT=aws", "CHAT_SQS_ENDPOINT=" + endpoint,
		"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?sslmode=disable",
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}
	if out, code := runChat(t, base, "status"); code == 0 || !strings.Contains(out, "CHAT_QUEUE_URL") {
		t.Fatalf("status without CHAT_QUEUE_URL: exit %d:\n%s", code, out)
	}
	out, code := runChat(t, append(base, "CHAT_QUEUE_URL="+source, "CHAT_DEAD_LETTER_QUEUE_URL="+dlq), "status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	if f := strings.Fields(lines[1]); len(f) != 5 || f[0] != "parley-dev-fanout" || f[1] != "2" || f[2] != "-" || f[3] != "1" || f[4] != "-" {
		t.Fatalf("status line %q: want the queue, depth 2, age -, 1 dead letter, consumers -", lines[1])
	}
}
