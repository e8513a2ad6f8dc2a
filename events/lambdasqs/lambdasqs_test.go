package lambdasqs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
)

const (
	conversation = "0190b6f4-8a3e-7c2d-9f10-1234567890ab"
	failingID    = "0190b6f4-8a40-7000-8000-0000000000f1"
	permanentID  = "0190b6f4-8a40-7000-8000-0000000000f2"
	panickingID  = "0190b6f4-8a40-7000-8000-0000000000f3"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// recorder handles events, failing the ones with the ids above.
type recorder struct{ handled []string }

func (r *recorder) Handle(_ context.Context, e events.Envelope) error {
	r.handled = append(r.handled, e.ID)
	switch e.ID {
	case failingID:
		return errors.New("database unavailable")
	case permanentID:
		return events.Permanent(errors.New("conversation does not exist"))
	case panickingID:
		panic("nil map")
	}
	return nil
}

func typing(t *testing.T, id string) events.Envelope {
	t.Helper()
	env, err := events.New(id, time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), 2, conversation,
		events.TypingV1{ConversationID: conversation, UserID: 2, RecipientID: 1, IsTyping: true})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// eventBridgeBody is env as an EventBridge rule delivers it to SQS, changed
// by edit.
func eventBridgeBody(t *testing.T, env events.Envelope, edit func(*ebevent.Event)) string {
	t.Helper()
	detail, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ev := ebevent.Event{Version: "0", ID: "5b8e2d1c-0f3a-4e7b-9c6d-1a2b3c4d5e6f", DetailType: env.Type, Source: events.Source,
		Account: "123456789012", Time: env.OccurredAt.Truncate(time.Second), Region: "us-east-1", Resources: []string{}, Detail: detail}
	if edit != nil {
		edit(&ev)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerRecords(t *testing.T) {
	ok := typing(t, "0190b6f4-8a40-7000-8000-0000000000e1")
	ourEnvelope, err := ok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		body        string
		wantHandled bool
		wantFailed  bool
	}{
		{"good", eventBridgeBody(t, ok, nil), true, false},
		{"handler fails", eventBridgeBody(t, typing(t, failingID), nil), true, true},
		{"handler fails permanently", eventBridgeBody(t, typing(t, permanentID), nil), true, true},
		{"handler panics", eventBridgeBody(t, typing(t, panickingID), nil), true, true},
		{"replayed", eventBridgeBody(t, ok, func(e *ebevent.Event) { e.ReplayName = "replay-1" }), true, false},
		{"garbage", "not json at all {", false, true},
		{"empty body", "", false, true},
		{"chat envelope without EventBridge", string(ourEnvelope), false, true},
		{"other source", eventBridgeBody(t, ok, func(e *ebevent.Event) { e.Source = "aws.s3" }), false, true},
		{"detail not an object", eventBridgeBody(t, ok, func(e *ebevent.Event) { e.Detail = json.RawMessage(`"text"`) }), false, true},
		{"invalid envelope", eventBridgeBody(t, ok, func(e *ebevent.Event) {
			e.Detail = json.RawMessage(`{"id":"not-a-uuid","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z","data":{}}`)
		}), false, true},
		{"detail-type differs from type", eventBridgeBody(t, ok, func(e *ebevent.Event) { e.DetailType = events.TypeMessageSent }), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r recorder
			const id = "059f36b4-87a3-44ab-83d2-661975830a7d"
			resp, err := Handler(events.AsBatch(&r), testLogger(t))(context.Background(), lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{
				{MessageId: id, Body: tt.body, Attributes: map[string]string{"ApproximateReceiveCount": "1"}},
			}})
			if err != nil {
				t.Fatalf("handler error: %v", err)
			}
			if got := len(r.handled) == 1; got != tt.wantHandled {
				t.Errorf("handled = %v (%v), want %v", got, r.handled, tt.wantHandled)
			}
			var want []lambdaevents.SQSBatchItemFailure
			if tt.wantFailed {
				want = []lambdaevents.SQSBatchItemFailure{{ItemIdentifier: id}}
			}
			if !slices.Equal(resp.BatchItemFailures, want) {
				t.Errorf("failures = %v, want %v", resp.BatchItemFailures, want)
			}
		})
	}
}

// TestHandlerRecordedBatch feeds a batch recorded in the shape Lambda
// delivers it: the second record's handler fails and the third is garbage.
func TestHandlerRecordedBatch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "sqs_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev lambdaevents.SQSEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	var handled []string
	h := events.HandlerFunc(func(_ context.Context, e events.Envelope) error {
		handled = append(handled, e.Type)
		if e.Type == events.TypeMessageRead {
			return errors.New("database unavailable")
		}
		return nil
	})
	resp, err := Handler(events.AsBatch(h), testLogger(t))(context.Background(), ev)
	if err != nil {
		t.Fatalf("handler error: %v", err)
	}
	if want := []string{events.TypeMessageSent, events.TypeMessageRead}; !slices.Equal(handled, want) {
		t.Errorf("handled %v, want %v in order", handled, want)
	}
	got, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"batchItemFailures":[{"itemIdentifier":"9a1b3f52-2c57-4e0f-a0a1-64c1e3f1d0b7"},{"itemIdentifier":"c80e8021-a70a-42c7-a470-796e1186f753"}]}`
	if string(got) != want {
		t.Errorf("response\n got %s\nwant %s", got, want)
	}
}

func TestHandlerAllSucceeded(t *testing.T) {
	var r recorder
	resp, err := Handler(events.AsBatch(&r), testLogger(t))(context.Background(), lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{
		{MessageId: "a", Body: eventBridgeBody(t, typing(t, "0190b6f4-8a40-7000-8000-0000000000e1"), nil)},
		{MessageId: "b", Body: eventBridgeBody(t, typing(t, "0190b6f4-8a40-7000-8000-0000000000e2"), nil)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"batchItemFailures":[]}`; string(got) != want {
		t.Errorf("response %s, want %s", got, want)
	}
	if len(r.handled) != 2 {
		t.Errorf("handled %v, want both", r.handled)
	}
}

// TestHandlerOutOfTime reports the records left when the invocation's
// deadline has passed, without handling them.
func TestHandlerOutOfTime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	handled := 0
	h := events.HandlerFunc(func(context.Context, events.Envelope) error {
		handled++
		cancel() // the deadline passes while the first record is handled
		return nil
	})
	resp, err := Handler(events.AsBatch(h), testLogger(t))(ctx, lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{
		{MessageId: "a", Body: eventBridgeBody(t, typing(t, "0190b6f4-8a40-7000-8000-0000000000e1"), nil)},
		{MessageId: "b", Body: eventBridgeBody(t, typing(t, "0190b6f4-8a40-7000-8000-0000000000e2"), nil)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if handled != 1 {
		t.Errorf("handled %d records, want 1", handled)
	}
	if want := []lambdaevents.SQSBatchItemFailure{{ItemIdentifier: "b"}}; !slices.Equal(resp.BatchItemFailures, want) {
		t.Errorf("failures = %v, want %v", resp.BatchItemFailures, want)
	}
}
