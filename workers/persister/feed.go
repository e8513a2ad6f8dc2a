package persister

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/wsproto"
)

// The sync feed: every change a user must learn of is stored once
// (feed_changes) and appended to the feed of each user it concerns
// (user_feed) at the next of their gap-free positions, in the transaction
// that applies the change. Only changes that really applied are appended,
// so a redelivered, replayed or superseded event appends nothing, and a
// change's (event, kind) is unique, so neither does a replay of one that
// applied. GET /sync reads the feed.

// The kinds of feed entries. Where a WebSocket frame announces the change
// the kind is the frame's type and the body its data (without presigned
// URLs, which would expire in the feed), so clients handle both alike.
const (
	KindNewMessage       = wsproto.TypeNewMessage
	KindMessageDelivered = wsproto.TypeMessageDelivered
	KindMessageRead      = wsproto.TypeMessageRead
	KindMessageUpdated   = wsproto.TypeMessageUpdated
	KindMessageUnsent    = wsproto.TypeMessageUnsent
	KindReactionChanged  = wsproto.TypeReactionChanged
	// KindMessageDeleted: the user deleted a message for themselves.
	KindMessageDeleted = "messageDeleted"
	// KindSettingsChanged: the user's settings of a conversation changed
	// (deleting it for themselves included).
	KindSettingsChanged = "settingsChanged"
)

// FeedMessage is a newMessage entry's body: the frame's data with the
// message's sequence in its conversation.
type FeedMessage struct {
	wsproto.NewMessageData
	Seq int64 `json:"seq"`
}

// FeedMessageDeleted is a messageDeleted entry's body.
type FeedMessageDeleted struct {
	MessageID      string    `json:"messageId"`
	ConversationID string    `json:"conversationId"`
	DeletedAt      time.Time `json:"deletedAt"`
}

// FeedSettings is a settingsChanged entry's body: the user's settings of
// the conversation after the change (DeletedAt set while it is deleted for
// them).
type FeedSettings struct {
	ConversationID string     `json:"conversationId"`
	Pinned         bool       `json:"pinned"`
	Muted          bool       `json:"muted"`
	Archived       bool       `json:"archived"`
	DeletedAt      *time.Time `json:"deletedAt"`
	ChangedAt      time.Time  `json:"changedAt"`
}

// feedChange is a change that applied, waiting to be appended to the
// feeds of its audience.
type feedChange struct {
	env  events.Envelope
	kind string
	conv uuid.UUID
	// only narrows the audience to these users (nil: no narrowing): the
	// actor alone for their own settings, the sender for a receipt, the
	// participants the ingress found a change may be told to (fixed in the
	// event, so a replay tells the same users).
	only []int64
	// message and follows are the messages the change is of (uuid.Nil:
	// none): it is never ordered before them.
	message uuid.UUID
	follows []uuid.UUID
	body    any
	// at is when the change was made, when not its event's time: a read
	// applied when its message arrives was made when it was read.
	at time.Time
	// seen is the creation time of the message the change shows (zero:
	// none): in a group, only members whose window holds it learn of it.
	seen time.Time
}

// feedBatch collects the changes of a batch in the order they applied.
type feedBatch []feedChange

func (b *feedBatch) add(c feedChange) { *b = append(*b, c) }

// audience is the one place that says who learns of a change: the
// participants of its conversation (looked up for the whole batch by
// FeedAudience), narrowed to the users the change itself names, and in a
// group to the members who see it: whose window holds the message it
// shows, and who were still members when it was made.
func audience(c feedChange, participants []db.FeedAudienceRow) []int64 {
	made := c.env.OccurredAt
	if !c.at.IsZero() {
		made = c.at
	}
	var out []int64
	for _, p := range participants {
		if c.only != nil && !slices.Contains(c.only, p.UserID) {
			continue
		}
		if p.Kind == "group" {
			if p.LeftAt != nil && made.After(*p.LeftAt) {
				continue
			}
			if !c.seen.IsZero() && (c.seen.Before(p.JoinedAt) || (p.LeftAt != nil && c.seen.After(*p.LeftAt))) {
				continue
			}
		}
		out = append(out, p.UserID)
	}
	return out
}

// inQueueOrder orders the changes of a batch by the queue order of their
// events (envs), not the order the persister applied them in (messages
// first), so that how events were batched does not change a feed: a replay,
// in larger batches, rebuilds the same positions. A change of a message
// stored by the same batch comes after the message, as it would have had
// each event been handled alone (a change waits for its message).
func inQueueOrder(envs []events.Envelope, changes feedBatch) {
	at := make(map[string]int, len(envs))
	for i, e := range envs {
		if _, ok := at[e.ID]; !ok {
			at[e.ID] = i
		}
	}
	stored := map[uuid.UUID]int{}
	for _, c := range changes {
		if c.kind == KindNewMessage {
			stored[c.message] = at[c.env.ID]
		}
	}
	key := func(c feedChange) int {
		k := at[c.env.ID]
		for _, m := range append([]uuid.UUID{c.message}, c.follows...) {
			if i, ok := stored[m]; ok {
				k = max(k, i)
			}
		}
		return k
	}
	slices.SortStableFunc(changes, func(a, b feedChange) int { return key(a) - key(b) })
}

// appendFeed appends the batch's changes to their audiences' feeds with
// three statements whatever the batch's size: one lookup of the
// audiences, one that locks the heads of every user concerned (after every
// other lock the batch took, in user id order), one insert of every entry
// that also raises the heads. It answers the entries it appended.
func appendFeed(ctx context.Context, tx pgx.Tx, envs []events.Envelope, changes feedBatch) ([]db.AppendFeedRow, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	inQueueOrder(envs, changes)
	q := db.New(tx)
	var convs []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, c := range changes {
		if !seen[c.conv] {
			seen[c.conv] = true
			convs = append(convs, c.conv)
		}
	}
	rows, err := q.FeedAudience(ctx, convs)
	if err != nil {
		return nil, fmt.Errorf("feed audience: %w", err)
	}
	participants := map[uuid.UUID][]db.FeedAudienceRow{}
	for _, r := range rows {
		participants[r.ConversationID] = append(participants[r.ConversationID], r)
	}
	var in db.AppendFeedParams
	type key struct {
		event uuid.UUID
		kind  string
	}
	stored := map[key]bool{}
	for _, c := range changes {
		users := audience(c, participants[c.conv])
		if len(users) == 0 {
			continue
		}
		id, err := uuid.Parse(c.env.ID)
		if err != nil {
			return nil, fmt.Errorf("feed entry for %s: event id %q: %w", c.env.Type, c.env.ID, err)
		}
		// An event makes at most one change of a kind; a second (a
		// redelivered copy in the same batch) is the first again.
		if stored[key{id, c.kind}] {
			continue
		}
		stored[key{id, c.kind}] = true
		body, err := json.Marshal(c.body)
		if err != nil {
			return nil, fmt.Errorf("feed entry for %s %s: %w", c.env.Type, c.env.ID, err)
		}
		in.Kinds = append(in.Kinds, c.kind)
		in.ConversationIds = append(in.ConversationIds, c.conv)
		in.EventIds = append(in.EventIds, id)
		at := c.env.OccurredAt
		if !c.at.IsZero() {
			at = c.at
		}
		in.OccurredAts = append(in.OccurredAts, at)
		in.Bodies = append(in.Bodies, body)
		for _, u := range users {
			in.EntryChanges = append(in.EntryChanges, int32(len(in.EventIds)))
			in.EntryUsers = append(in.EntryUsers, u)
		}
	}
	if len(in.EntryUsers) == 0 {
		return nil, nil
	}
	users := slices.Clone(in.EntryUsers)
	slices.Sort(users)
	if err := q.TakeFeedHeads(ctx, slices.Compact(users)); err != nil {
		return nil, fmt.Errorf("lock feed heads: %w", err)
	}
	appended, err := q.AppendFeed(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("append %d feed entries: %w", len(in.EntryUsers), err)
	}
	return appended, nil
}

// Bodies of the entries, built from the events that made the changes.

func feedNewMessage(m events.MessageSentV1, seq int64) FeedMessage {
	d := wsproto.NewMessage(wsproto.NewMessageData{
		ID: m.MessageID, ConversationID: m.ConversationID, SenderID: m.SenderID, RecipientID: m.RecipientID,
		ContentType: m.ContentType, TextContent: m.TextContent, MediaKey: m.MediaKey,
		AudioDuration: m.AudioDuration, ReplyToID: m.ReplyToID, ClientMessageID: m.ClientMessageID,
		CreatedAt: m.CreatedAt,
	}).Data
	return FeedMessage{NewMessageData: d, Seq: seq}
}

func feedSystemMessage(m events.GroupChangedV1, id string, seq int64) FeedMessage {
	d := wsproto.SystemMessage(id, m.ConversationID, m.At, wsproto.SystemData(m.System())).Data
	return FeedMessage{NewMessageData: d, Seq: seq}
}

func feedRead(conv string, reader int64, ids []string, at time.Time) wsproto.MessageReadData {
	return wsproto.MessageRead(wsproto.MessageReadData{ConversationID: conv, ReaderID: reader, MessageIDs: ids, ReadAt: at}).Data
}

func feedDelivered(m events.MessageDeliveredV1) wsproto.MessageDeliveredData {
	return wsproto.MessageDelivered(wsproto.MessageDeliveredData{
		MessageID: m.MessageID, ConversationID: m.ConversationID, DeliveredAt: m.DeliveredAt,
	}).Data
}

func feedEdited(m events.MessageEditedV1) wsproto.MessageUpdatedData {
	return wsproto.MessageUpdated(wsproto.MessageUpdatedData{
		MessageID: m.MessageID, ConversationID: m.ConversationID, TextContent: m.TextContent, EditedAt: &m.EditedAt,
	}).Data
}

func feedUnsent(m events.MessageUnsentV1) wsproto.MessageUnsentData {
	return wsproto.MessageUnsent(wsproto.MessageUnsentData{
		MessageID: m.MessageID, ConversationID: m.ConversationID, UnsentAt: m.UnsentAt,
	}).Data
}

func feedReaction(m events.ReactionChangedV1) wsproto.ReactionChangedData {
	return wsproto.ReactionChanged(wsproto.ReactionChangedData{
		MessageID: m.MessageID, ConversationID: m.ConversationID, UserID: m.UserID,
		Emoji: nonEmpty(m.Emoji), ChangedAt: m.ChangedAt,
	}).Data
}

func feedSettings(conv string, s db.UpdateParticipantSettingsRow, at time.Time) FeedSettings {
	var deleted *time.Time
	if s.DeletedAt != nil {
		t := s.DeletedAt.UTC()
		deleted = &t
	}
	return FeedSettings{ConversationID: conv, Pinned: s.Pinned, Muted: s.Muted, Archived: s.Archived,
		DeletedAt: deleted, ChangedAt: at.UTC()}
}

// with returns a function adding a change of a message, for applyChange to
// call once the change applied. participants, fixed at ingress, are who
// may be told (those who block the one making the change are not).
func (b *feedBatch) with(e events.Envelope, kind, conv, message string, participants []int64, body any) func() {
	return func() {
		b.add(feedChange{env: e, kind: kind, conv: uuid.MustParse(conv), message: uuid.MustParse(message), only: participants, body: body})
	}
}

// RenewFeedEpochs gives every user's feed a new epoch, batch users at a
// time, and answers how many: after a restore from a backup, whose heads
// are behind positions clients saw, a client's position of the old epoch
// answers a reset instead of entries numbered anew.
func RenewFeedEpochs(ctx context.Context, pool *pgxpool.Pool, batch int) (int64, error) {
	q := db.New(pool)
	var total, after int64
	for {
		r, err := q.RenewFeedEpochs(ctx, db.RenewFeedEpochsParams{AfterUser: after, BatchSize: int32(min(batch, math.MaxInt32))})
		total += r.Renewed
		if err != nil {
			return total, fmt.Errorf("renew the sync feeds' epochs: %w", err)
		}
		if r.Renewed < int64(batch) {
			return total, nil
		}
		after = r.LastUser
	}
}

// PruneFeed deletes the feed entries appended before before, batch at a
// time, each batch a short statement of its own so that no lock is held
// long, and answers how many it deleted. Each user's floor rises to the
// highest position deleted, so that GET /sync tells a client behind it to
// reload rather than answer with a gap.
func PruneFeed(ctx context.Context, pool *pgxpool.Pool, before time.Time, batch int) (int64, error) {
	q := db.New(pool)
	size := int32(min(batch, math.MaxInt32))
	var total int64
	for {
		n, err := q.PruneFeed(ctx, db.PruneFeedParams{Before: before, BatchSize: size})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune the sync feed: %w", err)
		}
		if n < int64(batch) {
			break
		}
	}
	// The changes last, once no entry older than before points at them.
	for {
		n, err := q.PruneFeedChanges(ctx, db.PruneFeedChangesParams{Before: before, BatchSize: size})
		if err != nil {
			return total, fmt.Errorf("prune the sync feed's changes: %w", err)
		}
		if n < int64(batch) {
			return total, nil
		}
	}
}
