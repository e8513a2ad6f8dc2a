package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/wsproto"
)

// Feed mode. A connection opened with ?feed=1 gets its user's sync feed:
// each change, once the persister has appended it, as a feedChange frame
// with the change's feed position (a message's with its seq), read from
// the feed when the persister announces the entries (FeedAppended). The
// fast frames of the same changes skip such a connection, so that it sees
// each change once, as the feed numbers it; a position beyond the next
// one tells the client it missed changes, which one GET /sync fills.
//
// A message's own fanout neither confirms nor pushes it to a recipient
// holding a connection in feed mode: that is done from here, per message
// entry of an announcement, once its posts are done: the receipt
// (MessageDelivered, and messageDelivered to the sender's connections not
// in feed mode) if a feed connection of the recipient got it, else a push
// request, even if the recipient's connections closed meanwhile (an
// announcement Held for its users: the local bus). As for a message's own
// receipts, the queued copy of an announcement the fast path posted
// publishes them.

// feedReadAgain is how long fanout waits before reading again the entries
// of an announcement published before its commit (EventBridge) that it did
// not find: far longer than a commit takes.
const feedReadAgain = 250 * time.Millisecond

// FeedEntries reads announced feed entries; *db.Queries implements it.
type FeedEntries interface {
	ListFeedEntries(ctx context.Context, arg db.ListFeedEntriesParams) ([]db.ListFeedEntriesRow, error)
}

var _ FeedEntries = (*db.Queries)(nil)

// WithFeed serves connections in feed mode from entries. Without it, they
// are served like the others.
func WithFeed(entries FeedEntries) Option {
	return func(f *Fanout) { f.feed = entries }
}

// isFeedChange reports whether the frames of an event type announce a
// change the persister appends to the sync feed: connections in feed mode
// get the entry instead.
func isFeedChange(eventType string) bool {
	switch eventType {
	case events.TypeMessageSent, events.TypeMessageRead, events.TypeMessageEdited,
		events.TypeMessageUnsent, events.TypeReactionChanged, events.TypeGroupChanged:
		return true
	}
	return false
}

// inFeed reports whether c gets the changes of the sync feed from the feed.
func (f *Fanout) inFeed(c connstore.Connection) bool { return f.feed != nil && c.Feed }

// feedPost is one announced entry to post to its user's feed connections.
type feedPost struct {
	event int // the announcement's index in the batch
	row   db.ListFeedEntriesRow
	frame []byte
}

// planFeed reads, with one query, the entries the batch's announcements
// name (of a Held announcement, all; else those of users holding a
// connection in feed mode now), in each user's position order. An entry
// of another epoch than announced (a stale announcement, the feed renewed
// since) is left out.
func (f *Fanout) planFeed(ctx context.Context, pushes []*push, conns map[int64][]connstore.Connection) ([]feedPost, error) {
	var in db.ListFeedEntriesParams
	type key struct{ user, position int64 }
	want := map[key]int{}
	epochs := map[key]int64{}
	early := false // some announcement may have come before its commit
	for i, p := range pushes {
		if p == nil || p.feed == nil {
			continue
		}
		early = early || !p.feed.Held
		for _, e := range p.feed.Entries {
			k := key{e.UserID, e.Position}
			if _, dup := want[k]; dup || (!p.feed.Held && !slices.ContainsFunc(conns[e.UserID], f.inFeed)) {
				continue
			}
			want[k], epochs[k] = i, e.Epoch
			in.UserIds, in.Positions = append(in.UserIds, e.UserID), append(in.Positions, e.Position)
			in.ChangeIds = append(in.ChangeIds, e.ChangeID)
		}
	}
	if len(in.UserIds) == 0 {
		return nil, nil
	}
	rows, err := f.feed.ListFeedEntries(ctx, in)
	if err == nil && early && len(rows) < len(in.UserIds) {
		// EventBridge gets an announcement before the persister's commit:
		// entries not visible yet are read again, once, a moment later
		// (those of a batch that rolled back never are).
		select {
		case <-time.After(feedReadAgain):
		case <-ctx.Done():
			return nil, fmt.Errorf("fanout: feed entries: %w", ctx.Err())
		}
		rows, err = f.feed.ListFeedEntries(ctx, in)
	}
	if err != nil {
		return nil, fmt.Errorf("fanout: %d feed entries: %w", len(in.UserIds), err)
	}
	out := make([]feedPost, 0, len(rows))
	for _, r := range rows {
		k := key{r.UserID, r.Position}
		if r.Epoch != epochs[k] {
			continue
		}
		b, err := wsproto.Encode(wsproto.NewFeedChange(r.Epoch, wsproto.FeedChange{Position: r.Position, Kind: r.Kind,
			ConversationID: r.ConversationID.String(), OccurredAt: r.OccurredAt, Data: r.Body}))
		if err != nil {
			return nil, fmt.Errorf("fanout: feed entry %d of user %d: %w", r.Position, r.UserID, err)
		}
		out = append(out, feedPost{event: want[k], row: r, frame: b})
	}
	return out, nil
}

// addFeed adds the feed posts to out, each to its user's feed connections,
// under the index base+k, and returns the envelopes those indexes name.
func (f *Fanout) addFeed(out *posts, envs []events.Envelope, feed []feedPost, conns map[int64][]connstore.Connection) []events.Envelope {
	all := slices.Clone(envs)
	for k, fp := range feed {
		all = append(all, envs[fp.event])
		for _, c := range conns[fp.row.UserID] {
			if f.inFeed(c) {
				out.add(len(envs)+k, c, fp.frame)
			}
		}
	}
	return all
}

// feedReceipt is what an announced message entry leaves to publish: the
// receipt of its recipient's feed connection (with the frame for the
// sender's other connections), or a push request.
type feedReceipt struct {
	env    events.Envelope
	sender int64
	frame  []byte // nil: a push request
}

// planFeedReceipts works out, per announcement, the receipt of every
// message entry that reached a feed connection of its recipient and a push
// request for every other one. (A recipient who also holds a plain
// connection that got the message may be pushed too: the price of never
// leaving a message both unconfirmed and unpushed.)
func (f *Fanout) planFeedReceipts(ctx context.Context, s *sent) {
	for k, fp := range s.feed {
		i := fp.event
		if fp.row.Kind != wsproto.TypeNewMessage || s.errs[i] != nil {
			continue
		}
		var d wsproto.NewMessageData
		if err := json.Unmarshal(fp.row.Body, &d); err != nil {
			f.logger.ErrorContext(ctx, "fanout: feed entry of a message does not decode", "user_id", fp.row.UserID, "position", fp.row.Position, "err", err)
			continue
		}
		u := fp.row.UserID
		if d.SenderID == u || d.System != nil {
			continue
		}
		m := events.MessageSentV1{MessageID: d.ID, ConversationID: d.ConversationID, SenderID: d.SenderID,
			RecipientID: d.RecipientID, ContentType: d.ContentType, TextContent: d.TextContent, CreatedAt: d.CreatedAt}
		if len(s.delivered[len(s.envs)+k]) == 0 {
			env, err := f.pushEvent(m, u)
			if err != nil {
				s.errs[i] = err
				continue
			}
			s.feedOut[i] = append(s.feedOut[i], feedReceipt{env: events.Caused(ctx, s.envs[i], env)})
			continue
		}
		receipt, env, err := f.deliveredEvent(m, u)
		if err != nil {
			s.errs[i] = err
			continue
		}
		b, err := wsproto.Encode(messageDeliveredFrame(receipt))
		if err != nil {
			s.errs[i] = fmt.Errorf("fanout: %w", err)
			continue
		}
		s.feedOut[i] = append(s.feedOut[i], feedReceipt{env: events.Caused(ctx, s.envs[i], env), sender: d.SenderID, frame: b})
	}
}

// feedReceipts publishes the batch's receipts and push requests of
// announced entries (planFeedReceipts; the fast path's, for announcements
// it posted) in one call, then tells the senders' connections outside
// feed mode of the receipts. A failed publish fails the announcements,
// which are posted again.
func (f *Fanout) feedReceipts(ctx context.Context, s sent) {
	var envs []events.Envelope
	var which []int
	var out []feedReceipt
	for i, rs := range s.feedOut {
		if s.errs[i] != nil {
			continue
		}
		for _, r := range rs {
			envs, which, out = append(envs, r.env), append(which, i), append(out, r)
		}
	}
	if len(envs) == 0 {
		return
	}
	if err := f.bus.Publish(events.EventContext(ctx, s.envs[which[0]]), envs...); err != nil {
		err = fmt.Errorf("fanout: publish %d receipts and push requests of feed entries: %w", len(envs), err)
		for _, i := range which {
			s.errs[i] = err
		}
		return
	}
	var senders []int64
	for _, r := range out {
		if r.frame != nil {
			senders = append(senders, r.sender)
		}
	}
	if len(senders) == 0 {
		return
	}
	// The senders' connections in feed mode learn of the receipts from
	// their feeds; the others are told here.
	conns, err := f.conns.ByUsers(ctx, unique64(senders))
	if err != nil {
		f.logger.WarnContext(ctx, "fanout: senders of messages delivered through feeds not told", "senders", len(senders), "err", err)
		return
	}
	var frames posts
	for _, r := range out {
		for _, c := range conns[r.sender] {
			if r.frame != nil && !f.inFeed(c) && !c.TokenExpired(f.now()) {
				frames.add(0, c, r.frame)
			}
		}
	}
	f.deliver(ctx, nil, &frames)
}
