package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// payloadTypes is one empty value of every payload version, for decoding
// whatever an envelope claims to carry.
func payloadTypes() []Payload {
	return []Payload{&MessageSentV1{}, &MessageReadV1{}, &TypingV1{}, &MessageDeliveredV1{},
		&MessageDeletedV1{}, &ConversationSettingsChangedV1{}, &ThumbnailReadyV1{}, &ConnectedV1{},
		&PresenceV1{}, &PushRequestedV1{}, &MessageEditedV1{}, &MessageUnsentV1{}, &ReactionChangedV1{},
		&GroupChangedV1{}, &ConversationCreatedV1{}, &FeedAppendedV1{}}
}

// FuzzDecode feeds arbitrary bytes to the envelope and payload decoders,
// which read whatever a queue, SQS or a replay hands a worker. Properties:
// no panic; every refusal is ErrInvalid (so consumers drop rather than
// retry it); what decodes re-encodes to bytes that decode to the same
// envelope and payload, and a decoded payload re-wrapped with New is valid.
func FuzzDecode(f *testing.F) {
	golden, _ := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Trace fields of the wrong JSON type decode as absent.
	f.Add([]byte(`{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z","actor_id":1,"data":{},"traceparent":123,"tracestate":{"a":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode error is not ErrInvalid: %v", err)
			}
			return
		}
		enc, err := env.Encode()
		if err != nil {
			t.Fatalf("a decoded envelope does not encode: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded envelope %s does not decode: %v", enc, err)
		}
		if enc2, _ := again.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the envelope:\n%s\n%s", enc, enc2)
		}
		for _, proto := range payloadTypes() {
			if proto.EventType() != env.Type {
				continue
			}
			p := reflect.New(reflect.TypeOf(proto).Elem()).Interface().(Payload)
			if err := env.Unmarshal(p); err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Unmarshal error is not ErrInvalid: %v", err)
				}
				continue
			}
			data, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("a decoded %s does not encode: %v", env.Type, err)
			}
			rewrapped, err := New(env.ID, env.OccurredAt, env.ActorID, env.ConversationID, p)
			if err != nil {
				t.Fatalf("a valid %s payload re-wrapped is invalid: %v", env.Type, err)
			}
			q := reflect.New(reflect.TypeOf(proto).Elem()).Interface().(Payload)
			if err := rewrapped.Unmarshal(q); err != nil {
				t.Fatalf("re-encoded %s %s does not decode: %v", env.Type, data, err)
			}
			if data2, _ := json.Marshal(q); !bytes.Equal(data, data2) {
				t.Fatalf("round trip changed the %s payload:\n%s\n%s", env.Type, data, data2)
			}
		}
	})
}
