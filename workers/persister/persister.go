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
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// ErrNotYetStored means an event refers to a message the persister has not
// stored yet (queues do not promise order); retrying later resolves it.
var ErrNotYetStored = errors.New("referenced message is not stored yet")

// DefaultPendingReadRetention is how long a read of a message not stored
// yet waits for it. Both wait in the same queue, so a legitimate read's
// message comes far sooner; what stays is an id that never was a message.
const DefaultPendingReadRetention = 24 * time.Hour

// Persister handles events for the persister worker.
type Persister struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	now    func() time.Time

	pendingRetention time.Duration
	// announcer publishes FeedAppended for the entries a batch appended
	// (WithFeedAnnouncements); nil: nothing is announced.
	announcer *announcer
}

// Option configures a Persister.
type Option func(*Persister)

// WithPendingReadRetention sets how long a read of a message not stored yet
// is kept for it (DefaultPendingReadRetention by default).
func WithPendingReadRetention(d time.Duration) Option {
	return func(p *Persister) { p.pendingRetention = d }
}

// WithFeedAnnouncements makes the persister publish, through bus, a
// FeedAppended for the feed entries each batch appends, for fanout to post
// to connections in feed mode. With listeners (where the connection store
// is in this database) only the entries of users holding such a
// connection are announced, so that a system without any announces
// nothing; without, every entry is.
func WithFeedAnnouncements(bus events.Publisher, listeners bool) Option {
	return func(p *Persister) { p.announcer = &announcer{bus: bus, listeners: listeners} }
}

var (
	_ events.Handler      = (*Persister)(nil)
	_ events.BatchHandler = (*Persister)(nil)
)

// New returns a persister writing through pool.
func New(pool *pgxpool.Pool, logger *slog.Logger, opts ...Option) *Persister {
	p := &Persister{pool: pool, logger: logger, now: time.Now, pendingRetention: DefaultPendingReadRetention}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Handle applies one event.
func (p *Persister) Handle(ctx context.Context, e events.Envelope) error {
	return p.HandleBatch(ctx, []events.Envelope{e})[0]
}

// HandleBatch applies a batch in one transaction: the consumer's own when it
// lends one (db.ScopeFrom: the local bus, where the acknowledgement commits
// with it), else one of its own (an SQS batch). Consecutive messages are
// stored with one statement, consecutive delivery receipts applied with
// another. If a statement fails, the batch's writes are undone and each
// event is applied alone in a savepoint of its own, so that one bad event
// fails alone: its neighbours are neither lost nor failed with it.
//
// The feed entries the batch appended are announced (FeedAppended, see
// announce.go) from the same transaction.
func (p *Persister) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	errs := make([]error, len(envs))
	var appended []db.AppendFeedRow
	if scope, ok := db.ScopeFrom(ctx); ok {
		err := p.apply(ctx, scope.Tx, envs, errs, &appended)
		if err == nil {
			err = p.announce(ctx, scope.Tx, envs, appended)
		}
		if err != nil {
			fill(errs, err)
		}
		return errs
	}
	var scope *db.Scope
	err := db.InTx(ctx, p.pool, false, func(tx pgx.Tx) error {
		if err := p.apply(ctx, tx, envs, errs, &appended); err != nil {
			return err
		}
		// A scope of this transaction, so that the local bus writes the
		// announcements in it.
		var sctx context.Context
		sctx, scope = db.WithScope(ctx, tx)
		return p.announce(sctx, tx, envs, appended)
	})
	if err != nil {
		fill(errs, err)
		return errs
	}
	if scope != nil {
		scope.Committed()
	}
	return errs
}

// classify marks what the database refused for the event's own content
// (a data exception, SQLSTATE class 22; an integrity violation, class 23)
// as permanent: retrying cannot fix it. Anything else (a lost connection, a
// deadlock) may pass and is retried.
func classify(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23")) {
		return events.Permanent(err)
	}
	return err
}

func fill(errs []error, err error) {
	for i := range errs {
		errs[i] = err
	}
}

// apply applies envs in tx, writing each event's outcome to errs, and
// appends the changes that applied to the sync feed (feed.go), last, so
// that the feed's locks come after every other lock the batch takes. It
// returns an error only when tx itself failed; then nothing of the batch is
// left in tx.
//
// When a statement of the batch fails, the events are applied one by one,
// each in a savepoint, and the feed of those that applied is appended in
// one go (appending per event would take feed locks before a later event's
// conversation locks). When that append fails too, each event is applied
// with its own feed entries, so that the one whose entries cannot be
// written fails alone.
func (p *Persister) apply(ctx context.Context, tx pgx.Tx, envs []events.Envelope, errs []error, appended *[]db.AppendFeedRow) error {
	var changes feedBatch
	err := inSavepoint(ctx, tx, func(sp pgx.Tx) error {
		if err := p.applyRuns(ctx, sp, envs, errs, &changes); err != nil {
			return err
		}
		rows, err := appendFeed(ctx, sp, envs, changes)
		*appended = rows
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errTx):
		*appended = nil
		return err
	case len(envs) == 1:
		*appended = nil
		errs[0] = classify(err)
		return nil
	}
	// Only entries of savepoints that were released stay in tx.
	*appended = nil
	p.logger.Warn("a batch statement failed; applying its events one by one", "events", len(envs), "err", err)
	err = inSavepoint(ctx, tx, func(all pgx.Tx) error {
		changes = changes[:0]
		for i, e := range envs {
			var mine feedBatch
			res := []error{nil}
			err := inSavepoint(ctx, all, func(one pgx.Tx) error {
				return p.applyRuns(ctx, one, []events.Envelope{e}, res, &mine)
			})
			if errors.Is(err, errTx) {
				return err
			}
			errs[i] = res[0]
			if err != nil {
				errs[i] = classify(err)
				continue
			}
			changes = append(changes, mine...)
		}
		rows, err := appendFeed(ctx, all, envs, changes)
		*appended = rows
		return err
	})
	if err == nil || errors.Is(err, errTx) {
		if err != nil {
			*appended = nil
		}
		return err
	}
	*appended = nil
	p.logger.Warn("the feed of a batch could not be appended; applying each event with its own", "events", len(envs), "err", err)
	for i, e := range envs {
		res := []error{nil}
		var rows []db.AppendFeedRow
		err := inSavepoint(ctx, tx, func(one pgx.Tx) error {
			var mine feedBatch
			if err := p.applyRuns(ctx, one, []events.Envelope{e}, res, &mine); err != nil {
				return err
			}
			var err error
			rows, err = appendFeed(ctx, one, []events.Envelope{e}, mine)
			return err
		})
		if errors.Is(err, errTx) {
			*appended = nil
			return err
		}
		errs[i] = res[0]
		if err != nil {
			errs[i] = classify(err)
			continue
		}
		*appended = append(*appended, rows...)
	}
	return nil
}

// errTx marks a failure of the transaction itself (a savepoint that could
// not be taken, released or rolled back to), after which nothing can be
// applied in it.
var errTx = errors.New("transaction failed")

// inSavepoint runs fn in a savepoint of tx: released when fn succeeds,
// rolled back to when it fails, so that tx stays usable. fn's error is
// returned as is; a savepoint's own failure is wrapped with errTx.
func inSavepoint(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%w: savepoint: %w", errTx, err)
	}
	if err := fn(sp); err != nil {
		if rb := sp.Rollback(ctx); rb != nil {
			return fmt.Errorf("%w: roll back to savepoint: %w (after %w)", errTx, rb, err)
		}
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return fmt.Errorf("%w: release savepoint: %w", errTx, err)
	}
	return nil
}

// applyRuns applies envs: first the direct conversations they create,
// then every message of the batch with one statement, then every delivery
// receipt with another, then the other events one by one, in queue order.
// Creations first, so that a message does not create its conversation
// without the creation's time; messages next, the order the other events
// need (each refers to a message); among themselves, receipts only
// set a missing time and settings keep the latest change, so neither
// depends on the order. (In a queue, receipts and messages alternate: runs
// of one type would be one or two events long.) Outcomes of single events
// (a message not stored yet, a bad payload) go to errs; a failed statement
// is returned, and leaves the transaction to be rolled back. The changes
// that applied are added to changes, in the order they applied.
func (p *Persister) applyRuns(ctx context.Context, tx pgx.Tx, envs []events.Envelope, errs []error, changes *feedBatch) error {
	// A group's change is a message in its sequence, between the messages
	// sent before it and those after (which waited for its lock at
	// ingress): the events on either side of one are applied apart, in
	// queue order.
	for i, e := range envs {
		if e.Type != events.TypeGroupChanged || len(envs) == 1 {
			continue
		}
		for _, seg := range [][2]int{{0, i}, {i, i + 1}, {i + 1, len(envs)}} {
			if seg[0] == seg[1] {
				continue
			}
			if err := p.applyRuns(ctx, tx, envs[seg[0]:seg[1]], errs[seg[0]:seg[1]], changes); err != nil {
				return err
			}
		}
		return nil
	}
	q := db.New(tx)
	var created, sent, delivered, other []int
	for i, e := range envs {
		switch e.Type {
		case events.TypeConversationCreated:
			created = append(created, i)
		case events.TypeMessageSent:
			sent = append(sent, i)
		case events.TypeMessageDelivered:
			delivered = append(delivered, i)
		default:
			other = append(other, i)
		}
	}
	for _, i := range created {
		if err := p.applyCreated(ctx, tx, envs[i], &errs[i], changes); err != nil {
			return err
		}
	}
	receipts := make([]*events.MessageDeliveredV1, len(delivered))
	for k, i := range delivered {
		var m events.MessageDeliveredV1
		if err := envs[i].Unmarshal(&m); err != nil {
			errs[i] = err
			continue
		}
		receipts[k] = &m
	}
	var folded map[uuid.UUID]bool
	if err := apply(envs, errs, sent, func(es []events.Envelope, out []error) (err error) {
		folded, err = p.storeMessages(ctx, tx, es, out, changes, firstDeliveries(receipts))
		return err
	}); err != nil {
		return err
	}
	if err := p.applyDelivered(ctx, q, envs, errs, delivered, receipts, folded, changes); err != nil {
		return err
	}
	for _, i := range other {
		if err := p.applyOne(ctx, q, envs[i], &errs[i], changes); err != nil {
			return err
		}
	}
	return nil
}

// apply runs fn over the events at idx, in order, and copies their
// outcomes back to errs.
func apply(envs []events.Envelope, errs []error, idx []int, fn func([]events.Envelope, []error) error) error {
	if len(idx) == 0 {
		return nil
	}
	es, out := make([]events.Envelope, len(idx)), make([]error, len(idx))
	for k, i := range idx {
		es[k] = envs[i]
	}
	if err := fn(es, out); err != nil {
		return err
	}
	for k, i := range idx {
		errs[i] = out[k]
	}
	return nil
}

// applyOne applies an event that is not batched. The event's own outcome
// goes to outcome, a change it made to changes; a failed statement is
// returned.
func (p *Persister) applyOne(ctx context.Context, q *db.Queries, e events.Envelope, outcome *error, changes *feedBatch) error {
	switch e.Type {
	case events.TypeMessageRead:
		var m events.MessageReadV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		return p.applyRead(ctx, q, e, m, outcome, changes)
	case events.TypeMessageDeleted:
		var m events.MessageDeletedV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		n, err := q.InsertMessageDeletion(ctx, db.InsertMessageDeletionParams{
			MessageID: uuid.MustParse(m.MessageID), UserID: m.UserID, DeletedAt: m.DeletedAt,
		})
		if err != nil {
			return fmt.Errorf("delete for user: %w", err)
		}
		if n > 0 {
			changes.add(feedChange{env: e, kind: KindMessageDeleted, conv: uuid.MustParse(m.ConversationID),
				only: []int64{m.UserID}, body: FeedMessageDeleted{MessageID: m.MessageID, ConversationID: m.ConversationID, DeletedAt: m.DeletedAt.UTC()}})
		}
		return nil
	case events.TypeConversationSettingsChanged:
		var m events.ConversationSettingsChangedV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		return p.applySettings(ctx, q, e, m, changes)
	case events.TypeThumbnailReady:
		var m events.ThumbnailReadyV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		return p.applyThumbnail(ctx, q, m, outcome)
	case events.TypeGroupChanged:
		var m events.GroupChangedV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		return p.applyGroupChange(ctx, q, e, m, changes)
	case events.TypeMessageEdited:
		var m events.MessageEditedV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		if p.pastDeadline(ctx, e, m.MessageID, m.EditedAt, m.Deadline) {
			return nil
		}
		return p.applyChange(ctx, q, e, m.MessageID, outcome, func() (int64, error) {
			return q.EditMessage(ctx, db.EditMessageParams{TextContent: &m.TextContent, EditedAt: &m.EditedAt,
				ID: uuid.MustParse(m.MessageID), SenderID: m.SenderID})
		}, changes.with(e, KindMessageUpdated, m.ConversationID, m.MessageID, m.ParticipantIDs, feedEdited(m)))
	case events.TypeMessageUnsent:
		var m events.MessageUnsentV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		if p.pastDeadline(ctx, e, m.MessageID, m.UnsentAt, m.Deadline) {
			return nil
		}
		return p.applyChange(ctx, q, e, m.MessageID, outcome, func() (int64, error) {
			return q.UnsendMessage(ctx, db.UnsendMessageParams{UnsentAt: &m.UnsentAt,
				ID: uuid.MustParse(m.MessageID), SenderID: m.SenderID})
		}, changes.with(e, KindMessageUnsent, m.ConversationID, m.MessageID, m.ParticipantIDs, feedUnsent(m)))
	case events.TypeReactionChanged:
		var m events.ReactionChangedV1
		if err := e.Unmarshal(&m); err != nil {
			*outcome = err
			return nil
		}
		return p.applyChange(ctx, q, e, m.MessageID, outcome, func() (int64, error) {
			return q.SetReaction(ctx, db.SetReactionParams{UserID: m.UserID, Emoji: nonEmpty(m.Emoji),
				ChangedAt: m.ChangedAt, MessageID: uuid.MustParse(m.MessageID)})
		}, changes.with(e, KindReactionChanged, m.ConversationID, m.MessageID, m.ParticipantIDs, feedReaction(m)))
	default:
		// A type this version does not know (added by a newer publisher):
		// acknowledging it keeps the queue moving; the archive still has it.
		p.logger.Warn("ignoring unknown event type", "type", e.Type, "version", e.Version, "event_id", e.ID)
		return nil
	}
}

// firstDeliveries maps each direct message a batch's receipts name to the
// time of its first receipt: what MarkMessagesDelivered would set. Group
// receipts also raise a member's position, so they are not folded.
func firstDeliveries(receipts []*events.MessageDeliveredV1) map[uuid.UUID]time.Time {
	first := map[uuid.UUID]time.Time{}
	for _, m := range receipts {
		if m == nil || m.Group {
			continue
		}
		id := uuid.MustParse(m.MessageID)
		if _, ok := first[id]; !ok {
			first[id] = m.DeliveredAt
		}
	}
	return first
}

// storeMessages inserts messages, each with the next sequence of its
// conversation in batch order. The conversations' row locks serialize
// writers of one conversation, so sequences are gap-free and follow commit
// order. A message with a delivery time in deliveries is stored delivered
// (in a queue its receipt follows it closely, so they often share a
// batch); it answers those stored now that way, whose receipts are then
// settled.
func (p *Persister) storeMessages(ctx context.Context, tx pgx.Tx, envs []events.Envelope, errs []error, changes *feedBatch, deliveries map[uuid.UUID]time.Time) (map[uuid.UUID]bool, error) {
	q := db.New(tx)
	var in db.InsertMessagesParams
	sent := make([]*events.MessageSentV1, len(envs))
	var convs []uuid.UUID
	parties := map[uuid.UUID][2]int64{}
	var withheld db.InsertMessageDeletionsParams
	for i, e := range envs {
		var m events.MessageSentV1
		if err := e.Unmarshal(&m); err != nil {
			errs[i] = err
			continue
		}
		sent[i] = &m
		if m.WithheldFromRecipient {
			// Kept for the sender only: hidden for the recipient from the
			// start, so no list, count or preview of theirs ever shows it.
			withheld.MessageIds = append(withheld.MessageIds, uuid.MustParse(m.MessageID))
			withheld.UserIds = append(withheld.UserIds, m.RecipientID)
			withheld.DeletedAts = append(withheld.DeletedAts, m.CreatedAt)
		}
		conv := uuid.MustParse(m.ConversationID)
		if _, ok := parties[conv]; !ok {
			parties[conv] = [2]int64{m.SenderID, m.RecipientID}
			convs = append(convs, conv)
		}
		audio := int32(-1)
		if m.AudioDuration != nil {
			audio = *m.AudioDuration
		}
		in.Ids = append(in.Ids, uuid.MustParse(m.MessageID))
		in.ConversationIds = append(in.ConversationIds, conv)
		in.SenderIds = append(in.SenderIds, m.SenderID)
		in.RecipientIds = append(in.RecipientIds, m.RecipientID)
		in.ContentTypes = append(in.ContentTypes, m.ContentType)
		in.TextContents = append(in.TextContents, m.TextContent)
		in.MediaKeys = append(in.MediaKeys, m.MediaKey)
		in.AudioDurations = append(in.AudioDurations, audio)
		in.ReplyToIds = append(in.ReplyToIds, m.ReplyToID)
		in.ClientMessageIds = append(in.ClientMessageIds, m.ClientMessageID)
		in.CreatedAts = append(in.CreatedAts, m.CreatedAt)
		in.Systems = append(in.Systems, "")
		in.DeliveredAts = append(in.DeliveredAts, deliveries[uuid.MustParse(m.MessageID)]) // zero: none
	}
	if len(in.Ids) == 0 {
		return nil, nil
	}
	locked, err := q.LockConversations(ctx, convs)
	if err != nil {
		return nil, fmt.Errorf("lock conversations: %w", err)
	}
	if len(locked) < len(convs) {
		// Only after a restore that lost conversations: recreate them from
		// the events, then lock them.
		have := map[uuid.UUID]bool{}
		for _, id := range locked {
			have[id] = true
		}
		var missing []uuid.UUID
		for _, id := range convs {
			if !have[id] {
				if parties[id][1] == 0 {
					// A group is created by its own event, which the
					// archive holds before any of its messages.
					return nil, fmt.Errorf("group %s: %w", id, ErrNotYetStored)
				}
				if err := p.recreateConversation(ctx, tx, id, parties[id][0], parties[id][1]); err != nil {
					return nil, err
				}
				missing = append(missing, id)
			}
		}
		if _, err := q.LockConversations(ctx, missing); err != nil {
			return nil, fmt.Errorf("lock recreated conversations: %w", err)
		}
	}
	// A new statement after the locks: its snapshot sees every message
	// committed before they were granted, so each sequence is next.
	in.SentAt = p.now()
	stored, err := q.InsertMessages(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("insert %d messages: %w", len(in.Ids), err)
	}
	if len(withheld.MessageIds) > 0 {
		if err := q.InsertMessageDeletions(ctx, withheld); err != nil {
			return nil, fmt.Errorf("withhold %d messages: %w", len(withheld.MessageIds), err)
		}
	}
	// The messages stored now (not those stored before), in batch order;
	// a read that arrived before its message applied with it.
	fresh := make(map[uuid.UUID]db.InsertMessagesRow, len(stored))
	for _, r := range stored {
		fresh[r.ID] = r
	}
	var delivered map[uuid.UUID]bool
	for i, m := range sent {
		if m == nil {
			continue
		}
		id := uuid.MustParse(m.MessageID)
		r, ok := fresh[id]
		if !ok {
			continue
		}
		delete(fresh, id)
		if _, ok := deliveries[id]; ok {
			if delivered == nil {
				delivered = map[uuid.UUID]bool{}
			}
			delivered[id] = true
		}
		conv := uuid.MustParse(m.ConversationID)
		var only []int64
		if m.WithheldFromRecipient {
			only = []int64{m.SenderID}
		}
		changes.add(feedChange{env: envs[i], kind: KindNewMessage, conv: conv, message: id, only: only, seen: m.CreatedAt, body: feedNewMessage(*m, r.Seq)})
		if r.ReadAt != nil {
			changes.add(feedChange{env: envs[i], kind: KindMessageRead, conv: conv, message: id, only: only,
				body: feedRead(m.ConversationID, m.RecipientID, []string{m.MessageID}, *r.ReadAt), at: *r.ReadAt})
		}
	}
	return delivered, nil
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

// applyRead marks the stored messages of a receipt read and records the
// others as pending reads, which storing the message applies (queues do
// not promise order). Nothing is retried: an id that never becomes a
// message, or one of another conversation or addressed to someone else, is
// a client's mistake, and applies to nothing. Re-applying is a no-op.
func (p *Persister) applyRead(ctx context.Context, q *db.Queries, e events.Envelope, m events.MessageReadV1, outcome *error, changes *feedBatch) error {
	ids := make([]uuid.UUID, len(m.MessageIDs))
	for i, s := range m.MessageIDs {
		ids[i] = uuid.MustParse(s)
	}
	convID := uuid.MustParse(m.ConversationID)
	missing, err := missingMessages(ctx, q, ids)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		// Serialize with a writer storing one of them right now (it holds
		// this lock): after it, the message is visible here; before it,
		// its insert sees the pending row.
		if _, err := q.LockConversations(ctx, []uuid.UUID{convID}); err != nil {
			return fmt.Errorf("lock conversation: %w", err)
		}
		if missing, err = missingMessages(ctx, q, missing); err != nil {
			return err
		}
	}
	if m.Group {
		return p.applyGroupRead(ctx, q, e, m, ids, missing, outcome, changes)
	}
	if len(missing) < len(ids) {
		marked, err := q.MarkMessagesRead(ctx, db.MarkMessagesReadParams{
			ReadAt: &m.ReadAt, Ids: ids, ConversationID: convID, ReaderID: &m.ReaderID,
		})
		if err != nil {
			return fmt.Errorf("mark read: %w", err)
		}
		if len(marked) > 0 {
			// The ids it marked now, in the receipt's order.
			var read []string
			var follows []uuid.UUID
			for _, id := range ids {
				if slices.Contains(marked, id) && !slices.Contains(read, id.String()) {
					read, follows = append(read, id.String()), append(follows, id)
				}
			}
			changes.add(feedChange{env: e, kind: KindMessageRead, conv: convID, follows: follows,
				body: feedRead(m.ConversationID, m.ReaderID, read, m.ReadAt)})
		}
		seq, err := q.MaxSeqOfMessages(ctx, db.MaxSeqOfMessagesParams{Ids: ids, ConversationID: convID, ReaderID: &m.ReaderID})
		if err != nil {
			return fmt.Errorf("read position: %w", err)
		}
		if seq > 0 {
			if err := q.AdvanceReadPosition(ctx, db.AdvanceReadPositionParams{
				Seq: seq, ReadAt: m.ReadAt, ConversationID: convID, UserID: m.ReaderID,
			}); err != nil {
				return fmt.Errorf("advance read position: %w", err)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := q.InsertPendingReads(ctx, db.InsertPendingReadsParams{
		MessageIds: missing, ReaderID: m.ReaderID, ConversationID: convID, ReadAt: m.ReadAt,
	}); err != nil {
		return fmt.Errorf("record pending reads: %w", err)
	}
	if err := q.PrunePendingReads(ctx, p.now().Add(-p.pendingRetention)); err != nil {
		return fmt.Errorf("prune pending reads: %w", err)
	}
	p.logger.DebugContext(ctx, "read of messages not stored yet: applied when they are",
		"conversation_id", m.ConversationID, "reader_id", m.ReaderID, "pending", len(missing))
	return nil
}

// missingMessages returns those of ids not stored.
func missingMessages(ctx context.Context, q *db.Queries, ids []uuid.UUID) ([]uuid.UUID, error) {
	rows, err := q.ListMessagesByIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	found := make(map[uuid.UUID]bool, len(rows))
	for _, r := range rows {
		found[r.ID] = true
	}
	var missing []uuid.UUID
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// applyDelivered applies the delivery receipts at idx of envs, decoded as
// receipts (nil: failed to decode; its outcome is set). Receipts of the
// messages in folded were stored with their message (storeMessages);
// the others are applied with one statement. The sender is told of each
// message delivered now, from its first receipt, in batch order.
func (p *Persister) applyDelivered(ctx context.Context, q *db.Queries, envs []events.Envelope, errs []error, idx []int, receipts []*events.MessageDeliveredV1, folded map[uuid.UUID]bool, changes *feedBatch) error {
	var in db.MarkMessagesDeliveredParams
	// A group message's receipts also raise each member's delivered
	// position, from which its counts are read.
	var group db.AdvanceDeliveredPositionsParams
	for _, m := range receipts {
		if m == nil {
			continue
		}
		id := uuid.MustParse(m.MessageID)
		if folded[id] {
			continue
		}
		in.Ids = append(in.Ids, id)
		in.DeliveredAts = append(in.DeliveredAts, m.DeliveredAt)
		if m.Group {
			group.MessageIds = append(group.MessageIds, id)
			group.UserIds = append(group.UserIds, m.RecipientID)
		}
	}
	// stored: whether each message is stored, and whether this batch
	// delivered it.
	stored := make(map[uuid.UUID]bool, len(folded)+len(in.Ids))
	for id := range folded {
		stored[id] = true
	}
	if len(in.Ids) > 0 {
		rows, err := q.MarkMessagesDelivered(ctx, in)
		if err != nil {
			return fmt.Errorf("mark %d delivered: %w", len(in.Ids), err)
		}
		for _, r := range rows {
			stored[r.ID] = r.Applied
		}
	}
	if len(group.MessageIds) > 0 {
		if err := q.AdvanceDeliveredPositions(ctx, group); err != nil {
			return fmt.Errorf("advance %d delivered positions: %w", len(group.MessageIds), err)
		}
	}
	for k, m := range receipts {
		if m == nil {
			continue
		}
		id := uuid.MustParse(m.MessageID)
		applied, ok := stored[id]
		if !ok {
			errs[idx[k]] = fmt.Errorf("message %s: %w", id, ErrNotYetStored)
			continue
		}
		if applied {
			changes.add(feedChange{env: envs[idx[k]], kind: KindMessageDelivered, conv: uuid.MustParse(m.ConversationID),
				message: id, only: []int64{m.SenderID}, body: feedDelivered(*m)})
			stored[id] = false // told once, from the first receipt
		}
	}
	return nil
}

func (p *Persister) applyThumbnail(ctx context.Context, q *db.Queries, m events.ThumbnailReadyV1, outcome *error) error {
	id := uuid.MustParse(m.MessageID)
	ok, err := q.MessageExists(ctx, id)
	if err != nil {
		return fmt.Errorf("check message %s: %w", id, err)
	}
	if !ok {
		*outcome = fmt.Errorf("message %s: %w", id, ErrNotYetStored)
		return nil
	}
	return q.SetMessageMedia(ctx, db.SetMessageMediaParams{
		ThumbnailKey: nonEmpty(m.ThumbnailKey), AudioDuration: m.AudioDuration, ID: id,
	})
}

// applyChange applies a change of a stored message with write, which
// changes nothing unless the change is allowed and newer than what is
// stored: a redelivered, replayed or older change is a no-op. A change of a
// message not stored yet waits for it (ErrNotYetStored). applied is called
// when the change applied.
func (p *Persister) applyChange(ctx context.Context, q *db.Queries, e events.Envelope, messageID string, outcome *error, write func() (int64, error), applied func()) error {
	n, err := write()
	if err != nil {
		return fmt.Errorf("%s: %w", e.Type, err)
	}
	if n > 0 {
		applied()
		return nil
	}
	id := uuid.MustParse(messageID)
	ok, err := q.MessageExists(ctx, id)
	if err != nil {
		return fmt.Errorf("check message %s: %w", id, err)
	}
	if !ok {
		*outcome = fmt.Errorf("message %s: %w", id, ErrNotYetStored)
		return nil
	}
	p.logger.DebugContext(ctx, "change not applied (applied already, superseded, or not allowed)",
		"type", e.Type, "event_id", e.ID, "message_id", messageID)
	return nil
}

// pastDeadline reports (and logs) a change made after the deadline its
// event carries: the ingress fixed both, so a redelivery or a replay gets
// the same answer, whatever window this process is configured with.
func (p *Persister) pastDeadline(ctx context.Context, e events.Envelope, messageID string, at, deadline time.Time) bool {
	if !at.After(deadline) {
		return false
	}
	p.logger.WarnContext(ctx, "change refused: made after its deadline",
		"type", e.Type, "event_id", e.ID, "message_id", messageID, "at", at, "deadline", deadline)
	return true
}

func (p *Persister) applySettings(ctx context.Context, q *db.Queries, e events.Envelope, m events.ConversationSettingsChangedV1, changes *feedBatch) error {
	now, err := q.UpdateParticipantSettings(ctx, db.UpdateParticipantSettingsParams{
		Pinned: m.Pinned, Muted: m.Muted, Archived: m.Archived, Deleted: m.Deleted,
		ChangedAt: m.ChangedAt, ConversationID: uuid.MustParse(m.ConversationID), UserID: m.UserID,
	})
	if err != nil {
		return fmt.Errorf("update settings: %w", err)
	}
	if len(now) == 0 {
		p.logger.Debug("settings change not applied (older than the current settings, or not a participant)",
			"conversation_id", m.ConversationID, "user_id", m.UserID)
		return nil
	}
	if !now[0].Changed {
		// Applied (its times are the newest now) but every value is as it
		// was: the user's devices have nothing to learn.
		return nil
	}
	changes.add(feedChange{env: e, kind: KindSettingsChanged, conv: uuid.MustParse(m.ConversationID),
		only: []int64{m.UserID}, body: feedSettings(m.ConversationID, now[0], m.ChangedAt)})
	return nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
