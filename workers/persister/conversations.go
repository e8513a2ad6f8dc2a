package persister

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// KindConversationCreated: a direct conversation was created. A group's
// creation is its system message (a newMessage entry whose system action
// is created), and a member added to one learns of it from the added one.
const KindConversationCreated = "conversationCreated"

// FeedConversation is a conversationCreated entry's body.
type FeedConversation struct {
	ConversationID string    `json:"conversationId"`
	Kind           string    `json:"kind"`
	ParticipantIDs []int64   `json:"participantIds"`
	CreatorID      int64     `json:"creatorId"`
	CreatedAt      time.Time `json:"createdAt"`
}

// applyCreated creates a direct conversation the ingress published (it is
// there already unless this is a replay into an emptied database, or the
// ingress's commit failed after an EventBridge publish) and appends its
// creation to both participants' feeds; the entry's (event, kind) makes a
// redelivery or replay append nothing. When the pair's conversation exists
// under another id (after such a failed commit, a retry created another,
// which has its own event), it applies nothing.
func (p *Persister) applyCreated(ctx context.Context, tx pgx.Tx, e events.Envelope, outcome *error, changes *feedBatch) error {
	var m events.ConversationCreatedV1
	if err := e.Unmarshal(&m); err != nil {
		*outcome = err
		return nil
	}
	id := uuid.MustParse(m.ConversationID)
	got, _, err := db.GetOrCreateDirectAt(ctx, tx, id, m.ParticipantIDs[0], m.ParticipantIDs[1], m.CreatedAt)
	if err != nil {
		return fmt.Errorf("create conversation: %w", err)
	}
	if got != id {
		p.logger.Info("a conversation's creation lost to another of the same users; nothing to apply",
			"conversation_id", id, "existing", got, "event_id", e.ID)
		return nil
	}
	changes.add(feedChange{env: e, kind: KindConversationCreated, conv: id,
		body: FeedConversation{ConversationID: m.ConversationID, Kind: "direct", ParticipantIDs: m.ParticipantIDs,
			CreatorID: m.CreatorID, CreatedAt: m.CreatedAt.UTC()}})
	return nil
}
