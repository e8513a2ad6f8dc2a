package persister

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// applyGroupChange applies a group's change and stores its system message,
// whose id is the event's, in the group's sequence. The ingress wrote the
// change already (last writer wins by its time, so writing it again
// changes nothing); it is written here for a replay into a database that
// lost it. A redelivery finds the system message stored and appends
// nothing.
func (p *Persister) applyGroupChange(ctx context.Context, q *db.Queries, e events.Envelope, m events.GroupChangedV1, changes *feedBatch) error {
	convID := uuid.MustParse(m.ConversationID)
	if m.Action == events.GroupCreated {
		if _, err := q.InsertGroup(ctx, db.InsertGroupParams{ID: convID, Title: &m.Title, CreatedAt: m.At, CreatedBy: &m.ActorID}); err != nil {
			return fmt.Errorf("create group: %w", err)
		}
	}
	locked, err := q.LockConversations(ctx, []uuid.UUID{convID})
	if err != nil {
		return fmt.Errorf("lock group: %w", err)
	}
	if len(locked) == 0 {
		// Its creation is older in the archive and the queue: not applied yet.
		return fmt.Errorf("group %s: %w", convID, ErrNotYetStored)
	}
	var joined []int64
	switch m.Action {
	case events.GroupCreated, events.GroupAdded:
		roles := make([]string, len(m.UserIDs))
		for i := range roles {
			roles[i] = events.RoleMember
		}
		if m.Action == events.GroupCreated {
			roles[0] = events.RoleOwner
		}
		if _, err := q.JoinGroup(ctx, db.JoinGroupParams{ConversationID: convID, Roles: roles, At: m.At, UserIds: m.UserIDs}); err != nil {
			return fmt.Errorf("join group: %w", err)
		}
		joined = m.UserIDs
	case events.GroupRemoved, events.GroupLeft:
		if _, err := q.LeaveGroup(ctx, db.LeaveGroupParams{At: m.At, ConversationID: convID, UserIds: m.UserIDs}); err != nil {
			return fmt.Errorf("leave group: %w", err)
		}
	case events.GroupRenamed:
		if _, err := q.RenameGroup(ctx, db.RenameGroupParams{Title: &m.Title, At: m.At, ID: convID}); err != nil {
			return fmt.Errorf("rename group: %w", err)
		}
	case events.GroupRoleChanged:
		if err := db.ApplyGroupRole(ctx, q, convID, m.ActorID, m.UserIDs[0], m.Role, m.At); err != nil {
			return err
		}
	}
	system, err := json.Marshal(m.System())
	if err != nil {
		return fmt.Errorf("system message: %w", err)
	}
	id := uuid.MustParse(e.ID)
	stored, err := q.InsertMessages(ctx, db.InsertMessagesParams{
		Ids: []uuid.UUID{id}, ConversationIds: []uuid.UUID{convID}, SenderIds: []int64{m.ActorID},
		RecipientIds: []int64{0}, ContentTypes: []string{events.ContentSystem}, TextContents: []string{""},
		MediaKeys: []string{""}, AudioDurations: []int32{-1}, ReplyToIds: []string{""}, ClientMessageIds: []string{""},
		CreatedAts: []time.Time{m.At}, Systems: []string{string(system)}, SentAt: p.now(),
	})
	if err != nil {
		return fmt.Errorf("store system message: %w", err)
	}
	if len(stored) == 0 {
		return nil // stored before: a redelivery or a replay
	}
	seq := stored[0].Seq
	if len(joined) > 0 {
		// Their unread count starts at the message that added them.
		if err := q.StartReadAt(ctx, db.StartReadAtParams{ReadSeq: seq - 1, ConversationID: convID, UserIds: joined}); err != nil {
			return fmt.Errorf("start read positions: %w", err)
		}
	}
	changes.add(feedChange{env: e, kind: KindNewMessage, conv: convID, message: id, only: m.Audience(), seen: m.At,
		body: feedSystemMessage(m, e.ID, seq)})
	return nil
}

// applyGroupRead advances a member's read position to the highest stored
// message of the receipt (a group's reads are positions, not per message).
// A receipt naming messages not stored yet waits for them: its stored ones
// apply now, and applying them again later changes nothing.
func (p *Persister) applyGroupRead(ctx context.Context, q *db.Queries, e events.Envelope, m events.MessageReadV1, ids, missing []uuid.UUID, outcome *error, changes *feedBatch) error {
	convID := uuid.MustParse(m.ConversationID)
	if len(missing) < len(ids) {
		seq, err := q.MaxSeqOfGroupMessages(ctx, db.MaxSeqOfGroupMessagesParams{Ids: ids, ConversationID: convID, ReaderID: m.ReaderID})
		if err != nil {
			return fmt.Errorf("group read position: %w", err)
		}
		if seq > 0 {
			n, err := q.AdvanceGroupReadPosition(ctx, db.AdvanceGroupReadPositionParams{
				Seq: seq, ReadAt: m.ReadAt, ConversationID: convID, UserID: m.ReaderID})
			if err != nil {
				return fmt.Errorf("advance group read position: %w", err)
			}
			if n > 0 {
				// The reader's own devices learn of it (their unread
				// count); the members see counts.
				changes.add(feedChange{env: e, kind: KindMessageRead, conv: convID, follows: ids[:0:0],
					only: []int64{m.ReaderID}, body: feedRead(m.ConversationID, m.ReaderID, m.MessageIDs, m.ReadAt)})
			}
		}
	}
	if len(missing) > 0 {
		*outcome = fmt.Errorf("%d of the read messages: %w", len(missing), ErrNotYetStored)
	}
	return nil
}
