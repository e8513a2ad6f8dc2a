package events

import (
	"errors"
	"fmt"
)

// TypeFeedAppended announces entries the persister appended to users' sync
// feeds, so that fanout can post them, with their positions, to the
// connections opened in feed mode.
const TypeFeedAppended = "FeedAppended"

// MaxFeedAppendedEntries bounds one FeedAppended's entries: the persister
// announces a larger batch in several events, so that none outgrows a
// queue's message size (EventBridge's 256 KB).
const MaxFeedAppendedEntries = 1000

// FeedEntryRef names one appended entry: the user whose feed it is in, the
// feed's epoch, the entry's position and the stored change it points at
// (feed_changes.id). Fanout reads the entry from the feed by all of them,
// so that a stale announcement posts nothing the feed does not hold.
type FeedEntryRef struct {
	UserID   int64 `json:"user_id"`
	Epoch    int64 `json:"epoch"`
	Position int64 `json:"position"`
	ChangeID int64 `json:"change_id"`
}

// FeedAppendedV1 is published by the persister from the transaction that
// appended the entries (on the local bus it commits with it; EventBridge
// gets it before the commit), in the order of each user's positions. A
// replay or a redelivery that appends nothing announces nothing.
type FeedAppendedV1 struct {
	Entries []FeedEntryRef `json:"entries"`
	// Held: every entry's user held a connection in feed mode when the
	// entries were appended (the persister looked them up). Fanout then
	// answers for each message entry's recipient whatever becomes of that
	// connection: a receipt if a feed connection got it, else a push.
	Held bool `json:"held,omitempty"`
}

func (FeedAppendedV1) EventType() string { return TypeFeedAppended }
func (FeedAppendedV1) EventVersion() int { return 1 }

func (m FeedAppendedV1) Validate() error {
	if len(m.Entries) == 0 || len(m.Entries) > MaxFeedAppendedEntries {
		return fmt.Errorf("entries: want 1 to %d, got %d", MaxFeedAppendedEntries, len(m.Entries))
	}
	var errs []error
	for i, e := range m.Entries {
		if e.UserID <= 0 || e.Position <= 0 || e.ChangeID <= 0 || e.Epoch <= 0 {
			errs = append(errs, fmt.Errorf("entries[%d]: user_id, epoch, position and change_id must be positive", i))
		}
	}
	if len(errs) > 3 {
		errs = append(errs[:3], errors.New("…"))
	}
	return errors.Join(errs...)
}
