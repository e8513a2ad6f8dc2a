package chat

import (
	"context"
	"slices"
	"time"

	"github.com/parleychat/parley/db"
)

// Blocking is a direct write at the edge, like get-or-create of a
// conversation, not an event the persister applies: the requests right
// after a block (the blocked user's next send, a new conversation) must
// obey it, and a queued event would let them through until it is applied.
//
// What the blocked user is told: nothing, as in the apps people know. Their
// sends are accepted and acknowledged as usual, kept for them only
// (withheld from the recipient: never posted, pushed, listed or counted
// there), and never show as delivered or read; the blocker's presence shows
// as hidden, as it would under the last-seen privacy setting. Only a new
// conversation with the blocker is refused, with the same reason whichever
// side blocks (see directConversation).

// blockCacheTTL bounds how long an API process answers "does R block S?"
// from memory. The process that records a block or an unblock drops its own
// entry at once; other processes (several API processes or Lambdas on AWS)
// obey it within this time. One entry per recipient costs one read per TTL,
// so a send adds no PostgreSQL transaction of its own.
const blockCacheTTL = 5 * time.Second

// maxCachedBlockLists bounds the recipients whose block lists are cached.
const maxCachedBlockLists = 100_000

// MaxBlocksListed bounds GET /blocks.
const MaxBlocksListed = 1000

// blockList is one user's blocks as read at a moment.
type blockList struct {
	blocked []int64
	at      time.Time
}

// BlockView is one of the caller's blocks.
type BlockView struct {
	UserID    int64     `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
}

// BlockInput names the user to block.
type BlockInput struct {
	UserID int64 `json:"user_id"`
}

func validBlockTarget(userID, other int64) error {
	if other <= 0 {
		return Errorf(CodeInvalid, "user_id must be a positive user id")
	}
	if other == userID {
		return Errorf(CodeInvalid, "you cannot block yourself")
	}
	return nil
}

// Block records that userID blocks in.UserID. Blocking again changes
// nothing.
func (s *Service) Block(ctx context.Context, userID int64, in BlockInput) (BlockView, error) {
	if err := validBlockTarget(userID, in.UserID); err != nil {
		return BlockView{}, err
	}
	if err := s.allowWrite(userID, WriteSettings, "block changes"); err != nil {
		return BlockView{}, err
	}
	since, err := s.q.InsertBlock(ctx, db.InsertBlockParams{BlockerID: userID, BlockedID: in.UserID, CreatedAt: s.clock()})
	if err != nil {
		return BlockView{}, unavailable("the database", err)
	}
	s.blockLists.remove(userID)
	return BlockView{UserID: in.UserID, CreatedAt: since}, nil
}

// Unblock removes a block; unblocking a user not blocked changes nothing.
func (s *Service) Unblock(ctx context.Context, userID, other int64) error {
	if err := validBlockTarget(userID, other); err != nil {
		return err
	}
	if err := s.allowWrite(userID, WriteSettings, "block changes"); err != nil {
		return err
	}
	if err := s.q.DeleteBlock(ctx, db.DeleteBlockParams{BlockerID: userID, BlockedID: other}); err != nil {
		return unavailable("the database", err)
	}
	s.blockLists.remove(userID)
	return nil
}

// Blocks lists the users userID blocks, newest first (at most
// MaxBlocksListed).
func (s *Service) Blocks(ctx context.Context, userID int64) ([]BlockView, error) {
	rows, err := s.q.ListBlocks(ctx, db.ListBlocksParams{BlockerID: userID, PageLimit: MaxBlocksListed})
	if err != nil {
		return nil, unavailable("the database", err)
	}
	out := make([]BlockView, 0, len(rows))
	for _, r := range rows {
		out = append(out, BlockView{UserID: r.BlockedID, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

// blocks reports whether blocker blocks blocked, from the cache when its
// entry is younger than blockCacheTTL (the ingress path: sends, typing).
func (s *Service) blocks(ctx context.Context, blocker, blocked int64) (bool, error) {
	now := s.now()
	l, ok := s.blockLists.get(blocker)
	if !ok || now.Sub(l.at) >= blockCacheTTL || now.Before(l.at) {
		ids, err := s.q.ListBlockedIDs(ctx, blocker)
		if err != nil {
			return false, unavailable("the database", err)
		}
		l = blockList{blocked: ids, at: now}
		s.blockLists.put(blocker, l)
	}
	return slices.Contains(l.blocked, blocked), nil
}

// blockedAmong answers, reading the database, which of users a blocks or
// is blocked by: for the rare writes that must see the latest state (a new
// conversation, a group's new members).
func (s *Service) blockedAmong(ctx context.Context, a int64, users ...int64) ([]int64, error) {
	ids, err := s.q.ListBlockedAmong(ctx, db.ListBlockedAmongParams{UserID: a, UserIds: users})
	if err != nil {
		return nil, unavailable("the database", err)
	}
	return ids, nil
}
