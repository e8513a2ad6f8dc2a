package sqs_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/sqs"
	"github.com/parleychat/parley/events/sqs/sqstest"
	"github.com/parleychat/parley/internal/awsconf"
)

// TestDeadLetters: List shows every message of a dead-letter queue and
// leaves them there, visible again at once; Redrive moves one by its SQS
// message id, then the rest, to the source queue with the same bodies.
func TestDeadLetters(t *testing.T) {
	endpoint, client := sqstest.StartGoaws(t, sqstest.QueueSpec{Name: "fanout", DLQ: "fanout-dlq"})
	source, dlq := sqstest.QueueURL(t, client, "fanout"), sqstest.QueueURL(t, client, "fanout-dlq")
	opts := awsconf.Options{Endpoint: endpoint}
	ctx := context.Background()

	// More than one receive's worth, and one body that is not an event.
	bodies := map[string]string{} // SQS message id → body
	evs := map[string]events.Envelope{}
	send := func(body string) string {
		out, err := client.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(body)})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.MessageId)
		bodies[id] = body
		return id
	}
	for range 12 {
		env := messageSent(t, events.ContentText)
		evs[send(sqstest.EventBridgeBody(t, env))] = env
	}
	poison := send("this is not an event")

	list := func() map[string]sqs.DeadLetter {
		t.Helper()
		dls, err := sqs.List(ctx, opts, dlq, 100, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]sqs.DeadLetter{}
		for _, dl := range dls {
			got[dl.MessageID] = dl
		}
		if len(got) != len(dls) {
			t.Fatalf("List returned a message twice: %+v", dls)
		}
		return got
	}
	for round := 1; round <= 2; round++ { // visible again right after a listing
		got := list()
		if len(got) != len(bodies) {
			t.Fatalf("round %d: listed %d messages, want %d", round, len(got), len(bodies))
		}
		for id, env := range evs {
			if dl := got[id]; dl.EventID != env.ID || dl.EventType != events.TypeMessageSent || dl.Invalid != "" || dl.ReceiveCount < 1 {
				// At least the listing's own receive (goaws does not count
				// a receive after a visibility change as SQS does).
				t.Errorf("round %d: listed %+v for event %s", round, dl, env.ID)
			}
		}
		if dl := got[poison]; dl.EventID != "" || dl.Invalid == "" {
			t.Errorf("round %d: the poison message is listed as %+v", round, dl)
		}
	}
	if dls, err := sqs.List(ctx, opts, dlq, 5, testLogger(t)); err != nil || len(dls) != 5 {
		t.Fatalf("List with limit 5: %d messages, %v", len(dls), err)
	}

	// One by id: only it moves.
	var one string
	for id := range evs {
		one = id
		break
	}
	if n, err := sqs.Redrive(ctx, opts, dlq, source, one, testLogger(t)); err != nil || n != 1 {
		t.Fatalf("Redrive(%s) = %d, %v", one, n, err)
	}
	if n, err := sqs.Redrive(ctx, opts, dlq, source, one, testLogger(t)); err == nil || !strings.Contains(err.Error(), "no message "+one) {
		t.Fatalf("Redrive of a message already moved = %d, %v", n, err)
	}
	moved := sqstest.Drain(t, client, source, 0)
	if len(moved) != 1 || aws.ToString(moved[0].Body) != bodies[one] {
		t.Fatalf("the source queue got %d messages, want the body of %s", len(moved), one)
	}
	if got := list(); len(got) != len(bodies)-1 {
		t.Fatalf("%d messages left in the dead-letter queue, want %d", len(got), len(bodies)-1)
	}

	// The rest, the poison message too: the operator chose to.
	if n, err := sqs.Redrive(ctx, opts, dlq, source, "", testLogger(t)); err != nil || n != len(bodies)-1 {
		t.Fatalf("Redrive all = %d, %v; want %d", n, err, len(bodies)-1)
	}
	var want, arrived []string
	for id, b := range bodies {
		if id != one {
			want = append(want, b)
		}
	}
	for _, m := range sqstest.Drain(t, client, source, 0) {
		arrived = append(arrived, aws.ToString(m.Body))
	}
	slices.Sort(want)
	slices.Sort(arrived)
	if !slices.Equal(arrived, want) {
		t.Fatalf("the source queue got %d bodies, want the %d left in the dead-letter queue:\n%q", len(arrived), len(want), arrived)
	}
	if left := sqstest.Drain(t, client, dlq, 0); len(left) != 0 {
		t.Fatalf("%d messages left in the dead-letter queue", len(left))
	}
	if n, err := sqs.Redrive(ctx, opts, dlq, source, "", testLogger(t)); err != nil || n != 0 {
		t.Fatalf("Redrive of an empty queue = %d, %v", n, err)
	}
}
