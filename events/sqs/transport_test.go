package sqs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
	"github.com/parleychat/parley/events/eventbridge/ebfake"
	"github.com/parleychat/parley/events/sqs"
	"github.com/parleychat/parley/events/sqs/sqstest"
	"github.com/parleychat/parley/internal/awsconf"
)

const conversation = "0190b6f4-8a3e-7c2d-9f10-1234567890ab"

var workers = []string{events.WorkerPersister, events.WorkerFanout, events.WorkerThumbnailer}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// recording remembers every delivery to every worker, in order.
type recording struct {
	mu       sync.Mutex
	attempts map[string][]string // worker → event ids, one per delivery
	done     map[string][]string // worker → event ids handled successfully
}

func (r *recording) handler(worker string, fail func(events.Envelope) error) events.Handler {
	return events.HandlerFunc(func(_ context.Context, e events.Envelope) error {
		err := fail(e)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts[worker] = append(r.attempts[worker], e.ID)
		if err == nil {
			r.done[worker] = append(r.done[worker], e.ID)
		}
		return err
	})
}

func (r *recording) snapshot() (attempts, done map[string][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	attempts, done = map[string][]string{}, map[string][]string{}
	for w, ids := range r.attempts {
		attempts[w] = slices.Clone(ids)
	}
	for w, ids := range r.done {
		done[w] = slices.Clone(ids)
	}
	return attempts, done
}

func count(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a hang, not a slow run).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newEvent(t *testing.T, p events.Payload) events.Envelope {
	t.Helper()
	env, err := events.New(uuid.NewString(), time.Now(), 1, conversation, p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func messageSent(t *testing.T, contentType string) events.Envelope {
	m := events.MessageSentV1{MessageID: uuid.NewString(), ConversationID: conversation, SenderID: 1, RecipientID: 2,
		ContentType: contentType, CreatedAt: time.Now()}
	if contentType == events.ContentText {
		m.TextContent = "Olá! Como vai?"
	} else {
		m.MediaKey = "chat/1/" + m.MessageID
	}
	return newEvent(t, m)
}

// TestTransport runs the AWS topology offline: publisher → fake EventBridge
// (rules from events.Routes) → one real SQS queue per worker, each with a
// dead-letter queue → sqs.Run.
func TestTransport(t *testing.T) {
	var specs []sqstest.QueueSpec
	for _, w := range workers {
		specs = append(specs, sqstest.QueueSpec{Name: w, VisibilityTimeout: 1, DLQ: w + "-dlq", MaxReceiveCount: 2})
	}
	endpoint, sqsClient := sqstest.StartGoaws(t, specs...)
	queues, dlqs := map[string]string{}, map[string]string{}
	for _, w := range workers {
		queues[w] = sqstest.QueueURL(t, sqsClient, w)
		dlqs[w] = sqstest.QueueURL(t, sqsClient, w+"-dlq")
	}
	bus, err := ebfake.New(sqsClient, queues)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(bus)
	defer srv.Close()
	ebClient, err := eventbridge.NewClient(context.Background(), awsconf.Options{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := eventbridge.NewPublisher(ebClient, eventbridge.Options{BusName: "parley", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}

	var (
		text     = messageSent(t, events.ContentText)
		image    = messageSent(t, events.ContentImage)
		video    = messageSent(t, events.ContentVideo) // the thumbnailer rejects it for good
		typing   = newEvent(t, events.TypingV1{ConversationID: conversation, UserID: 1, RecipientID: 2, IsTyping: true})
		stuck    = newEvent(t, events.MessageReadV1{ConversationID: conversation, ReaderID: 2, MessageIDs: []string{uuid.NewString()}, ReadAt: time.Now()})
		after    = newEvent(t, events.MessageDeliveredV1{MessageID: uuid.NewString(), ConversationID: conversation, SenderID: 1, RecipientID: 2, DeliveredAt: time.Now()})
		poison   = "this is not an event"
		failures = map[string]func(events.Envelope) error{
			events.WorkerPersister: func(e events.Envelope) error {
				if e.ID == stuck.ID {
					return errors.New("database unavailable")
				}
				return nil
			},
			events.WorkerFanout: func(events.Envelope) error { return nil },
			events.WorkerThumbnailer: func(e events.Envelope) error {
				if e.ID == video.ID {
					return events.Permanent(errors.New("not an image"))
				}
				return nil
			},
		}
	)

	rec := &recording{attempts: map[string][]string{}, done: map[string][]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, len(workers))
	for _, w := range workers {
		go func() {
			stopped <- sqs.Run(ctx, sqs.Config{QueueURL: queues[w], AWS: awsconf.Options{Endpoint: endpoint}}, rec.handler(w, failures[w]), testLogger(t).With("worker", w))
		}()
	}

	if err := pub.Publish(ctx, text, image, video, typing, stuck); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if _, err := sqsClient.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(queues[events.WorkerFanout]), MessageBody: aws.String(poison)}); err != nil {
		t.Fatal(err)
	}
	// Once the persister has failed on one event, others must still reach it.
	waitFor(t, "the persister fails on the stuck event", func() bool {
		attempts, _ := rec.snapshot()
		return count(attempts[events.WorkerPersister], stuck.ID) > 0
	})
	if err := pub.Publish(ctx, after); err != nil {
		t.Fatalf("publish: %v", err)
	}

	dead := map[string][]string{} // worker → bodies found in its DLQ
	waitFor(t, "every event is handled or dead-lettered", func() bool {
		for _, w := range workers {
			for _, m := range sqstest.Drain(t, sqsClient, dlqs[w], 0) {
				dead[w] = append(dead[w], aws.ToString(m.Body))
			}
		}
		_, done := rec.snapshot()
		return len(done[events.WorkerPersister]) >= 4 && len(done[events.WorkerFanout]) >= 5 && len(done[events.WorkerThumbnailer]) >= 1 &&
			len(dead[events.WorkerPersister]) >= 1 && len(dead[events.WorkerFanout]) >= 1 && len(dead[events.WorkerThumbnailer]) >= 1
	})
	cancel()
	for range workers {
		if err := <-stopped; err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	}

	attempts, done := rec.snapshot()
	wantDone := map[string][]string{
		events.WorkerPersister:   {text.ID, image.ID, video.ID, after.ID},
		events.WorkerFanout:      {text.ID, image.ID, video.ID, typing.ID, stuck.ID},
		events.WorkerThumbnailer: {image.ID},
	}
	names := map[string]string{text.ID: "text", image.ID: "image", video.ID: "video", typing.ID: "typing", stuck.ID: "stuck", after.ID: "after"}
	named := func(ids []string) string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = names[id]
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	for _, w := range workers {
		if got, want := named(done[w]), named(wantDone[w]); got != want {
			t.Errorf("%s handled [%s], want each of [%s] once", w, got, want)
		}
	}
	// Routing: what a worker must never see, even as a failed attempt.
	for _, w := range []string{events.WorkerPersister, events.WorkerThumbnailer} {
		if count(attempts[w], typing.ID) > 0 {
			t.Errorf("%s received Typing", w)
		}
	}
	if count(attempts[events.WorkerThumbnailer], text.ID) > 0 {
		t.Error("thumbnailer received a text message")
	}
	// Dead letters: each failing message was received maxReceiveCount times,
	// then moved to its worker's dead-letter queue as delivered.
	if n := count(attempts[events.WorkerPersister], stuck.ID); n != 2 {
		t.Errorf("persister tried the stuck event %d times, want maxReceiveCount = 2", n)
	}
	if n := count(attempts[events.WorkerThumbnailer], video.ID); n != 2 {
		t.Errorf("thumbnailer tried the rejected event %d times, want maxReceiveCount = 2", n)
	}
	wantDead := map[string][]string{
		events.WorkerPersister:   {"event " + stuck.ID},
		events.WorkerFanout:      {"raw " + poison},
		events.WorkerThumbnailer: {"event " + video.ID},
	}
	gotDead := map[string][]string{}
	for w, bodies := range dead {
		for _, b := range bodies {
			if env, err := ebevent.Decode([]byte(b)); err == nil {
				gotDead[w] = append(gotDead[w], "event "+env.ID)
			} else {
				gotDead[w] = append(gotDead[w], "raw "+b)
			}
		}
	}
	if !maps.EqualFunc(gotDead, wantDead, slices.Equal) {
		t.Errorf("dead-letter queues hold %v, want %v", gotDead, wantDead)
	}
	// Nothing is left behind on the workers' own queues.
	for _, w := range workers {
		if left := sqstest.Drain(t, sqsClient, queues[w], 0); len(left) > 0 {
			t.Errorf("%s queue still holds %d messages", w, len(left))
		}
	}
}

func TestRunRejectsUnknownQueue(t *testing.T) {
	endpoint, _ := sqstest.StartGoaws(t, sqstest.QueueSpec{Name: "persister"})
	h := events.HandlerFunc(func(context.Context, events.Envelope) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s/%s/missing", endpoint, sqstest.Account)
	if err := sqs.Run(ctx, sqs.Config{QueueURL: url, AWS: awsconf.Options{Endpoint: endpoint}}, h, testLogger(t)); err == nil {
		t.Fatal("Run on a missing queue returned nil")
	}
	if err := sqs.Run(ctx, sqs.Config{AWS: awsconf.Options{Endpoint: endpoint}}, h, testLogger(t)); err == nil {
		t.Fatal("Run without a queue URL returned nil")
	}
}
