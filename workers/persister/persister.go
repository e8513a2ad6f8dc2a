// Package persister is the worker that writes chat state: it stores
// messages with their per-conversation sequence and applies reads,
// deliveries, deletions, settings and thumbnails. Every handler is
// idempotent, so redelivery and replay change nothing.
package persister

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// ErrNotYetStored means an event refers to a message the persister has not
// stored yet (queues do not promise order); retrying later resolves it.
var ErrNotYetStored = errors.New("referenced message is not stored yet")

// Persister handles events for the persister worker.
type Persister struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	now    func() time.Time
}

var _ events.Handler = (*Persister)(nil)

// New returns a persister writing through pool.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Persister {
	return &Persister{pool: pool, logger: logger, now: time.Now}
}

// Handle applies one event.
func (p *Persister) Handle(ctx context.Context, e events.Envelope) error {
	switch e.Type {
	case events.TypeMessageSent:
		var m events.MessageSentV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return p.storeMessage(ctx, m)
	case events.TypeMessageRead:
		var m events.MessageReadV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return p.applyRead(ctx, m)
	case events.TypeMessageDelivered:
		var m events.MessageDeliveredV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return p.applyDelivered(ctx, m)
	case events.TypeMessageDeleted:
		var m events.MessageDeletedV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return p.exec(ctx, func(q *db.Queries) error {
			return q.InsertMessageDeletion(ctx, db.InsertMessageDeletionParams{
				MessageID: uuid.MustParse(m.MessageID), UserID: m.UserID, DeletedAt: m.DeletedAt,
			})
		})
	case events.TypeConversationSettingsChanged:
		var m events.ConversationSettingsChangedV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return p.applySettings(ctx, m)
	case events.TypeThumbnailReady:
		var m events.ThumbnailReadyV1
		if err := e.Unmarshal(&m); err != nil {
			return err
		}
		return p.applyThumbnail(ctx, m)
	default:
		// A type this version does not know (added by a newer publisher):
		// acknowledging it keeps the queue moving; the archive still has it.
		p.logger.Warn("ignoring unknown event type", "type", e.Type, "version", e.Version, "event_id", e.ID)
		return nil
	}
}

// storeMessage inserts a message with the next sequence of its conversation.
// The conversation row lock serializes writers of one conversation, so the
// sequence is gap-free and follows commit order.
func (p *Persister) storeMessage(ctx context.Context, m events.MessageSentV1) error {
	msgID := uuid.MustParse(m.MessageID)
	convID := uuid.MustParse(m.ConversationID)
	err := db.InTx(ctx, p.pool, events.AckFlushes(ctx), func(tx pgx.Tx) error {
		q := db.New(tx)
		if _, err := q.LockConversation(ctx, convID); errors.Is(err, pgx.ErrNoRows) {
			// Only after a restore that lost the conversation: recreate it
			// from the event, then lock it.
			if err := p.recreateConversation(ctx, tx, convID, m.SenderID, m.RecipientID); err != nil {
				return err
			}
			if _, err := q.LockConversation(ctx, convID); err != nil {
				return fmt.Errorf("lock recreated conversation: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("lock conversation: %w", err)
		}
		var replyTo *uuid.UUID
		if m.ReplyToID != "" {
			r := uuid.MustParse(m.ReplyToID)
			replyTo = &r
		}
		// A new statement after the lock: its snapshot sees every message
		// committed before the lock was granted, so the sequence is next.
		if _, err := q.InsertNextMessage(ctx, db.InsertNextMessageParams{
			ID: msgID, ConversationID: convID, SenderID: m.SenderID, RecipientID: m.RecipientID,
			ContentType: m.ContentType, TextContent: nonEmpty(m.TextContent), MediaKey: nonEmpty(m.MediaKey),
			AudioDuration: m.AudioDuration, ReplyToID: replyTo, ClientMessageID: nonEmpty(m.ClientMessageID),
			CreatedAt: m.CreatedAt, SentAt: p.now(),
		}); err != nil {
			return fmt.Errorf("insert message: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store message %s: %w", m.MessageID, err)
	}
	return nil
}

func (p *Persister) recreateConversation(ctx context.Context, tx pgx.Tx, id uuid.UUID, a, b int64) error {
	got, _, err := db.GetOrCreateDirect(ctx, tx, id, a, b)
	if err != nil {
		return fmt.Errorf("recreate conversation: %w", err)
	}
	if got != id {
		return events.Permanent(fmt.Errorf("conversation %s between %d and %d conflicts with existing %s", id, a, b, got))
	}
	return nil
}

// applyRead marks the stored messages of a receipt read at once, then, if
// some are not stored yet, returns ErrNotYetStored so the bus retries: one
// missing id never holds back the others, and re-applying is a no-op.
func (p *Persister) applyRead(ctx context.Context, m events.MessageReadV1) error {
	ids := make([]uuid.UUID, len(m.MessageIDs))
	for i, s := range m.MessageIDs {
		ids[i] = uuid.MustParse(s)
	}
	convID := uuid.MustParse(m.ConversationID)
	missing := 0
	err := db.InTx(ctx, p.pool, events.AckFlushes(ctx), func(tx pgx.Tx) error {
		q := db.New(tx)
		rows, err := q.ListMessagesByIDs(ctx, ids)
		if err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		found := make(map[uuid.UUID]bool, len(rows))
		for _, r := range rows {
			found[r.ID] = true
		}
		missing = 0
		for _, id := range ids {
			if !found[id] {
				missing++
			}
		}
		if len(rows) == 0 {
			return nil
		}
		if err := q.MarkMessagesRead(ctx, db.MarkMessagesReadParams{
			ReadAt: &m.ReadAt, Ids: ids, ConversationID: convID, ReaderID: m.ReaderID,
		}); err != nil {
			return fmt.Errorf("mark read: %w", err)
		}
		seq, err := q.MaxSeqOfMessages(ctx, db.MaxSeqOfMessagesParams{Ids: ids, ConversationID: convID, ReaderID: m.ReaderID})
		if err != nil {
			return fmt.Errorf("read position: %w", err)
		}
		if seq == 0 {
			return nil
		}
		return q.AdvanceReadPosition(ctx, db.AdvanceReadPositionParams{
			Seq: seq, ReadAt: m.ReadAt, ConversationID: convID, UserID: m.ReaderID,
		})
	})
	if err != nil {
		return err
	}
	if missing > 0 {
		return fmt.Errorf("read of %d messages, %d not stored: %w", len(ids), missing, ErrNotYetStored)
	}
	return nil
}

// exec runs fn in one transaction, committed without waiting for the disk
// when the consumer's acknowledgement will flush it (events.AckFlushes).
func (p *Persister) exec(ctx context.Context, fn func(q *db.Queries) error) error {
	return db.InTx(ctx, p.pool, events.AckFlushes(ctx), func(tx pgx.Tx) error { return fn(db.New(tx)) })
}

func (p *Persister) applyDelivered(ctx context.Context, m events.MessageDeliveredV1) error {
	id := uuid.MustParse(m.MessageID)
	return p.exec(ctx, func(q *db.Queries) error {
		if err := p.requireMessage(ctx, q, id); err != nil {
			return err
		}
		return q.MarkMessageDelivered(ctx, db.MarkMessageDeliveredParams{DeliveredAt: &m.DeliveredAt, ID: id})
	})
}

func (p *Persister) applyThumbnail(ctx context.Context, m events.ThumbnailReadyV1) error {
	id := uuid.MustParse(m.MessageID)
	return p.exec(ctx, func(q *db.Queries) error {
		if err := p.requireMessage(ctx, q, id); err != nil {
			return err
		}
		return q.SetMessageMedia(ctx, db.SetMessageMediaParams{
			ThumbnailKey: nonEmpty(m.ThumbnailKey), AudioDuration: m.AudioDuration, ID: id,
		})
	})
}

func (p *Persister) requireMessage(ctx context.Context, q *db.Queries, id uuid.UUID) error {
	ok, err := q.MessageExists(ctx, id)
	if err != nil {
		return fmt.Errorf("check message %s: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("message %s: %w", id, ErrNotYetStored)
	}
	return nil
}

func (p *Persister) applySettings(ctx context.Context, m events.ConversationSettingsChangedV1) error {
	var n int64
	err := p.exec(ctx, func(q *db.Queries) (err error) {
		n, err = q.UpdateParticipantSettings(ctx, db.UpdateParticipantSettingsParams{
			Pinned: m.Pinned, Muted: m.Muted, Archived: m.Archived, Deleted: m.Deleted,
			ChangedAt: m.ChangedAt, ConversationID: uuid.MustParse(m.ConversationID), UserID: m.UserID,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("update settings: %w", err)
	}
	if n == 0 {
		p.logger.Debug("settings change not applied (older than the current settings, or not a participant)",
			"conversation_id", m.ConversationID, "user_id", m.UserID)
	}
	return nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
