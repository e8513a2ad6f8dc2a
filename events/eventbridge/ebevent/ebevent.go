// Package ebevent reads and writes the event format EventBridge delivers to
// its targets: the JSON body of an SQS message routed by a rule. The chat's
// own envelope travels in its detail. It imports only the standard library
// and the events package, so Lambdas can use it without the AWS SDK.
package ebevent

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/parleychat/parley/events"
)

// Event is an event as EventBridge hands it to a target.
type Event struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       time.Time       `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
	// ReplayName is set only on events re-sent by an archive replay.
	ReplayName string `json:"replay-name,omitempty"`
}

// Parse reads an EventBridge event and checks that it carries a chat event:
// the chat's source and a detail object. Every error wraps events.ErrInvalid,
// since retrying cannot fix a body.
func Parse(body []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return Event{}, fmt.Errorf("%w: not an EventBridge event: %v", events.ErrInvalid, err)
	}
	switch {
	case e.Source != events.Source:
		return Event{}, fmt.Errorf("%w: EventBridge source is %q, want %q", events.ErrInvalid, e.Source, events.Source)
	case len(e.Detail) == 0 || e.Detail[0] != '{':
		return Event{}, fmt.Errorf("%w: EventBridge event %s has no detail object", events.ErrInvalid, e.ID)
	}
	return e, nil
}

// Envelope decodes and validates the chat envelope in the detail. Its type
// must be the detail-type the rules matched on.
func (e Event) Envelope() (events.Envelope, error) {
	env, err := events.Decode(e.Detail)
	if err != nil {
		return events.Envelope{}, fmt.Errorf("EventBridge event %s: %w", e.ID, err)
	}
	if env.Type != e.DetailType {
		return events.Envelope{}, fmt.Errorf("%w: EventBridge event %s: detail-type %q but envelope type %q",
			events.ErrInvalid, e.ID, e.DetailType, env.Type)
	}
	return env, nil
}

// Decode parses an EventBridge event body and returns the chat envelope in it.
func Decode(body []byte) (events.Envelope, error) {
	e, err := Parse(body)
	if err != nil {
		return events.Envelope{}, err
	}
	return e.Envelope()
}
