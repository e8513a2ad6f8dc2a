package sqs

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
)

func TestUnmarshal(t *testing.T) {
	const conversation = "0190b6f4-8a3e-7c2d-9f10-1234567890ab"
	env, err := events.New("0190b6f4-8a40-7000-8000-0000000000ee", time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), 2, conversation,
		events.TypingV1{ConversationID: conversation, UserID: 2, RecipientID: 1, IsTyping: true})
	if err != nil {
		t.Fatal(err)
	}
	detail, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(ebevent.Event{Version: "0", ID: "5b8e2d1c-0f3a-4e7b-9c6d-1a2b3c4d5e6f", DetailType: env.Type,
		Source: events.Source, Account: "123456789012", Time: env.OccurredAt, Region: "us-east-1", Resources: []string{},
		Detail: detail, ReplayName: "replay-1"})
	if err != nil {
		t.Fatal(err)
	}
	sqsMessage := func(body string) *sqstypes.Message {
		return &sqstypes.Message{MessageId: aws.String("sqs-1"), ReceiptHandle: aws.String("handle-1"), Body: aws.String(body),
			Attributes: map[string]string{"ApproximateReceiveCount": "3"}}
	}

	t.Run("EventBridge event", func(t *testing.T) {
		msg, err := unmarshaler{}.Unmarshal(sqsMessage(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		if msg.UUID != env.ID {
			t.Errorf("UUID %q, want the event id %q", msg.UUID, env.ID)
		}
		if string(msg.Payload) != string(detail) {
			t.Errorf("payload %s, want the envelope %s", msg.Payload, detail)
		}
		want := map[string]string{metaEventBridgeID: "5b8e2d1c-0f3a-4e7b-9c6d-1a2b3c4d5e6f", metaReplayName: "replay-1",
			metaSQSMessageID: "sqs-1", metaReceiptHandle: "handle-1", metaReceiveCount: "3", metaInvalid: ""}
		for k, v := range want {
			if got := msg.Metadata.Get(k); got != v {
				t.Errorf("metadata %s = %q, want %q", k, got, v)
			}
		}
	})

	t.Run("not an event", func(t *testing.T) {
		for _, bad := range []string{"", "poison", string(detail), `{"source":"parley.chat","detail":{"id":"x"}}`} {
			msg, err := unmarshaler{}.Unmarshal(sqsMessage(bad))
			if err != nil {
				t.Fatalf("%q: error %v; want a message flagged invalid", bad, err)
			}
			if msg.Metadata.Get(metaInvalid) == "" || msg.UUID != "sqs-1" || string(msg.Payload) != bad {
				t.Errorf("%q: got uuid %q, payload %q, invalid %q; want the SQS id, the raw body and a reason",
					bad, msg.UUID, msg.Payload, msg.Metadata.Get(metaInvalid))
			}
		}
	})
}
