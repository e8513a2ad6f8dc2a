// Package events holds the domain events of the chat: their typed, versioned
// payloads, the JSON envelope that carries them on every transport, and the
// routing of event types to workers. It imports only the standard library so
// that every transport and every Lambda can depend on it cheaply.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Source is the EventBridge source of every event the chat publishes.
const Source = "parley.chat"

// Event types. Names never change: queues, rules and archives select on them.
const (
	TypeMessageSent                 = "MessageSent"
	TypeMessageRead                 = "MessageRead"
	TypeTyping                      = "Typing"
	TypeMessageDelivered            = "MessageDelivered"
	TypeMessageDeleted              = "MessageDeleted"
	TypeConversationSettingsChanged = "ConversationSettingsChanged"
	TypeThumbnailReady              = "ThumbnailReady"
	TypeConnected                   = "Connected"
	TypePresence                    = "Presence"
	TypePushRequested               = "PushRequested"
	TypeMessageEdited               = "MessageEdited"
	TypeMessageUnsent               = "MessageUnsent"
	TypeReactionChanged             = "ReactionChanged"
)

// Envelope is the wire format of every event. Within a version, fields are
// only ever added; a breaking change is a new Version of the payload type.
type Envelope struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	Version        int             `json:"version"`
	OccurredAt     time.Time       `json:"occurred_at"`
	ActorID        int64           `json:"actor_id"`
	ConversationID string          `json:"conversation_id,omitempty"`
	Data           json.RawMessage `json:"data"`
	// Traceparent and Tracestate are the W3C trace context of the span
	// that published the event, so that the workers' spans join its trace.
	// Set whenever tracing is on, sampled or not (the flags carry the
	// decision, which the workers follow); a malformed value never fails
	// the event (see TraceError).
	Traceparent TraceField `json:"traceparent,omitempty"`
	Tracestate  TraceField `json:"tracestate,omitempty"`
}

// Payload is implemented by every versioned event payload.
type Payload interface {
	EventType() string
	EventVersion() int
}

// New wraps a payload in an envelope. The id must be unique per event and is
// what makes redelivery detectable downstream.
func New(id string, occurredAt time.Time, actorID int64, conversationID string, p Payload) (Envelope, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s payload: %w", p.EventType(), err)
	}
	env := Envelope{
		ID:             id,
		Type:           p.EventType(),
		Version:        p.EventVersion(),
		OccurredAt:     occurredAt.UTC(),
		ActorID:        actorID,
		ConversationID: conversationID,
		Data:           data,
	}
	return env, env.Validate()
}

// ErrInvalid marks an envelope or payload that can never be processed; a
// consumer must not retry it.
var ErrInvalid = errors.New("invalid event")

// Validate checks the envelope fields every consumer relies on. The trace
// context is not among them: TraceError checks it, and a consumer ignores a
// malformed one rather than fail the event.
func (e Envelope) Validate() error {
	switch {
	case !IsUUID(e.ID):
		return fmt.Errorf("%w: id %q is not a UUID", ErrInvalid, e.ID)
	case e.Type == "":
		return fmt.Errorf("%w: type is empty", ErrInvalid)
	case e.Version < 1:
		return fmt.Errorf("%w: version %d", ErrInvalid, e.Version)
	case e.OccurredAt.IsZero():
		return fmt.Errorf("%w: occurred_at is missing", ErrInvalid)
	case e.ConversationID != "" && !IsUUID(e.ConversationID):
		return fmt.Errorf("%w: conversation_id %q is not a UUID", ErrInvalid, e.ConversationID)
	case len(e.Data) == 0:
		return fmt.Errorf("%w: data is empty", ErrInvalid)
	}
	return nil
}

// Decode parses and validates an envelope.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return e, e.Validate()
}

// Encode is the one place envelopes become bytes.
func (e Envelope) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode envelope %s: %w", e.ID, err)
	}
	return b, nil
}

// Unmarshal decodes the payload into p after checking type and version, and
// validates it when p knows how.
func (e Envelope) Unmarshal(p Payload) error {
	if e.Type != p.EventType() || e.Version != p.EventVersion() {
		return fmt.Errorf("%w: envelope is %s v%d, want %s v%d", ErrInvalid, e.Type, e.Version, p.EventType(), p.EventVersion())
	}
	if err := json.Unmarshal(e.Data, p); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrInvalid, e.Type, err)
	}
	if v, ok := p.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, e.Type, err)
		}
	}
	return nil
}

// IsUUID reports whether s is a canonical 36-character UUID string.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
