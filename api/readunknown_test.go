package api_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// TestReadOfUnknownIDsRaisesNoAlarm checks that read receipts naming ids
// that are no message leave no dead letter, on delivery nor on replay,
// while a legitimate receipt that reaches the persister before its message
// is still applied.
func TestReadOfUnknownIDsRaisesNoAlarm(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	conv := e.Conversation(t, 1, 2)
	v7, v4 := uuid.Must(uuid.NewV7()).String(), uuid.NewString()
	var res chat.ReadResult
	e.MustDo(t, 2, http.MethodPost, readPath, map[string]any{"conversation_id": conv, "message_ids": []string{v7, v4}}, http.StatusOK, &res)
	if !slices.Equal(res.Read, []string{v7}) || !slices.Equal(res.Ignored, []string{v4}) {
		t.Fatalf("read %v, ignored %v; want the UUIDv7 read (it may not be stored yet) and the v4 ignored", res.Read, res.Ignored)
	}
	// The persister is not running yet: the message waits in its queue.
	msg := e.Send(t, 1, map[string]any{"conversation_id": conv, "text_content": "hi", "client_message_id": "r-1"})
	e.MustDo(t, 2, http.MethodPost, readPath, map[string]any{"conversation_id": conv, "message_ids": []string{msg.ID}}, http.StatusOK, &res)
	if !slices.Equal(res.Read, []string{msg.ID}) {
		t.Fatalf("read %v, want %s", res.Read, msg.ID)
	}

	since := time.Now().Add(-time.Hour)
	e.StartPersister(t, pgbus.ConsumerConfig{MaxAttempts: 2, RetryBackoff: 10 * time.Millisecond})
	drained(t, e)
	var readAt *time.Time
	if err := e.Pool.QueryRow(context.Background(), "SELECT read_at FROM messages WHERE id = $1", msg.ID).Scan(&readAt); err != nil || readAt == nil {
		t.Fatalf("the legitimate read was not applied: read_at %v, err %v", readAt, err)
	}
	noDeadLetters(t, e)

	n, err := e.Bus.Replay(context.Background(), events.WorkerPersister, since, time.Now())
	if err != nil || n == 0 {
		t.Fatalf("Replay: %d events, %v", n, err)
	}
	drained(t, e)
	noDeadLetters(t, e)
}

// drained waits until the persister's queue is empty, retries included.
func drained(t *testing.T, e *pipelinetest.Env) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := e.Pool.QueryRow(context.Background(), "SELECT count(*) FROM queue_persister").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still queued for the persister", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func noDeadLetters(t *testing.T, e *pipelinetest.Env) {
	t.Helper()
	dls, err := e.Bus.DeadLetters(context.Background(), "", true, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		t.Errorf("dead letter: %s %s: %s", dl.Worker, dl.EventType, dl.Error)
	}
}
