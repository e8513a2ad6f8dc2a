package chat

import (
	"context"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/internal/wsproto"
)

// The sync feed: every change a user must learn of, at a per-user gap-free
// position, appended by the persister (workers/persister/feed.go). A
// client keeps the last position it handled and asks for what follows.

// maxFeedEpoch is the largest epoch a feed is given (user_feed_heads):
// 2^53 - 1, exact in JavaScript.
const maxFeedEpoch = 1<<53 - 1

// SyncChange is one entry of a user's feed; its one home is the protocol
// package, since a feedChange frame carries the same entry.
type SyncChange = wsproto.FeedChange

// SyncResult answers GET /sync. Next is the position to ask from next
// time, within Epoch (0 while the user has no feed yet). Reset
// says the position asked from is no longer in the feed (pruned, ahead of
// it as after a restore, or of another epoch): the client reloads its
// conversations and continues from Next.
type SyncResult struct {
	Changes []SyncChange `json:"changes"`
	Next    int64        `json:"next"`
	Epoch   int64        `json:"epoch"`
	HasMore bool         `json:"has_more"`
	Reset   bool         `json:"reset"`
}

// Sync answers the changes of userID's feed after position since, at most
// limit of them (0: DefaultSyncLimit). epoch is the epoch since is of (0:
// not known, as from a client older than epochs); a position of another
// epoch than the feed's answers a reset.
func (s *Service) Sync(ctx context.Context, userID, since, epoch int64, limit int) (SyncResult, error) {
	if since < 0 {
		return SyncResult{}, Errorf(CodeBadRequest, "since must be a non-negative integer")
	}
	if epoch < 0 || epoch > maxFeedEpoch {
		return SyncResult{}, Errorf(CodeBadRequest, "epoch must be an integer from 0 to %d", int64(maxFeedEpoch))
	}
	if limit == 0 {
		limit = min(DefaultSyncLimit, s.limits.MaxSyncChanges)
	}
	if limit < 1 || limit > s.limits.MaxSyncChanges {
		return SyncResult{}, Errorf(CodeBadRequest, "limit must be an integer from 1 to %d", s.limits.MaxSyncChanges)
	}
	rows, err := s.q.ListFeed(ctx, db.ListFeedParams{UserID: userID, Since: since, PageLimit: int32(limit + 1)})
	if err != nil {
		return SyncResult{}, unavailable("the database", err)
	}
	// Read after the entries: a prune between the two reads makes the
	// answer a reset, never a silent gap.
	b, err := s.q.FeedBounds(ctx, userID)
	if err != nil {
		return SyncResult{}, unavailable("the database", err)
	}
	// A position of 0 has seen nothing, in any epoch.
	otherEpoch := since > 0 && epoch != 0 && epoch != b.Epoch
	if since < b.PrunedThrough || since > b.Head || otherEpoch {
		return SyncResult{Changes: []SyncChange{}, Next: b.Head, Epoch: b.Epoch, Reset: true}, nil
	}
	res := SyncResult{Changes: make([]SyncChange, 0, min(len(rows), limit)), Next: since, Epoch: b.Epoch, HasMore: len(rows) > limit}
	for _, r := range rows[:min(len(rows), limit)] {
		res.Changes = append(res.Changes, SyncChange{Position: r.Position, Kind: r.Kind,
			ConversationID: r.ConversationID.String(), OccurredAt: r.OccurredAt.UTC(), Data: r.Body})
		res.Next = r.Position
	}
	// Entries appended between the two reads are more to fetch.
	res.HasMore = res.HasMore || res.Next < b.Head
	return res, nil
}
