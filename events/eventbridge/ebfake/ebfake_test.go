package ebfake_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"github.com/parleychat/parley/events"
	ebbus "github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/eventbridge/ebfake"
	"github.com/parleychat/parley/internal/awsconf"
)

// These cases fail before any routing, so the fake needs no queues.
func TestFakeAnswersLikeEventBridge(t *testing.T) {
	f, err := ebfake.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	client, err := ebbus.NewClient(context.Background(), awsconf.Options{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	entry := func(detail string) types.PutEventsRequestEntry {
		return types.PutEventsRequestEntry{EventBusName: aws.String("parley"), Source: aws.String(events.Source),
			DetailType: aws.String(events.TypeTyping), Detail: aws.String(detail)}
	}
	put := func(entries ...types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
		return client.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: entries})
	}

	t.Run("per-entry results", func(t *testing.T) {
		f.FailNext(1)
		out, err := put(entry(`{"a":1}`), entry(`not json`), entry(`"a string"`), entry(`{"data":"not an object"}`))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"InternalFailure", "MalformedDetail", "MalformedDetail", ""}
		if out.FailedEntryCount != 3 || len(out.Entries) != len(want) {
			t.Fatalf("FailedEntryCount %d, %d entries; want 3 of %d", out.FailedEntryCount, len(out.Entries), len(want))
		}
		for i, e := range out.Entries {
			if got := aws.ToString(e.ErrorCode); got != want[i] || (got == "") != (e.EventId != nil) {
				t.Errorf("entry %d: code %q, event id %v; want code %q and an event id only on success", i, got, aws.ToString(e.EventId), want[i])
			}
		}
	})

	t.Run("more than ten entries", func(t *testing.T) {
		var entries []types.PutEventsRequestEntry
		for range 11 {
			entries = append(entries, entry(`{}`))
		}
		_, err := put(entries...)
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" {
			t.Fatalf("error %v, want a ValidationException", err)
		}
	})

	t.Run("unknown worker", func(t *testing.T) {
		if _, err := ebfake.New(nil, map[string]string{"mailer": "http://127.0.0.1:1/q"}); err == nil {
			t.Fatal("no error for a queue of an unknown worker")
		}
	})
}
