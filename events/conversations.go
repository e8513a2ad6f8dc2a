package events

import (
	"errors"
	"fmt"
	"time"
)

// TypeConversationCreated is the creation of a direct conversation. (A
// group's creation is a GroupChanged with the action created.)
const TypeConversationCreated = "ConversationCreated"

// ConversationCreatedV1 is published by the ingress from the transaction
// that creates a direct conversation (on the local bus it commits with it).
// The persister creates the conversation where it is missing (a replay into
// an emptied database, or a commit that failed after an EventBridge
// publish) and appends its conversationCreated entry to both participants'
// sync feeds.
type ConversationCreatedV1 struct {
	ConversationID string `json:"conversation_id"`
	CreatorID      int64  `json:"creator_id"`
	// ParticipantIDs are the conversation's two users, in ascending order.
	ParticipantIDs []int64   `json:"participant_ids"`
	CreatedAt      time.Time `json:"created_at"`
}

func (ConversationCreatedV1) EventType() string { return TypeConversationCreated }
func (ConversationCreatedV1) EventVersion() int { return 1 }

func (m ConversationCreatedV1) Validate() error {
	var errs []error
	if !IsUUID(m.ConversationID) {
		errs = append(errs, fmt.Errorf("conversation_id %q is not a UUID", m.ConversationID))
	}
	if p := m.ParticipantIDs; len(p) != 2 || p[0] <= 0 || p[0] >= p[1] {
		errs = append(errs, fmt.Errorf("participant_ids must be two distinct positive user ids in ascending order, got %v", p))
	} else if m.CreatorID != p[0] && m.CreatorID != p[1] {
		errs = append(errs, fmt.Errorf("creator_id %d is not one of the participants %v", m.CreatorID, p))
	}
	if m.CreatedAt.IsZero() {
		errs = append(errs, errors.New("created_at is missing"))
	}
	return errors.Join(errs...)
}
