package chat

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/parleychat/parley/db/dbtest"
	"github.com/parleychat/parley/events"
)

// nopBus stands in for the event bus: blocks never publish.
type nopBus struct{}

func (nopBus) Publish(context.Context, ...events.Envelope) error { return nil }

// The block cache's rules, over real PostgreSQL: the process that records a
// block or an unblock obeys it at once; another process (two API processes
// share a database, not their memory) obeys it once its entry is
// blockCacheTTL old.
func TestBlockCacheInvalidation(t *testing.T) {
	_, pool := dbtest.New(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	here := NewService(pool, nopBus{}, nil, Limits{}, slog.New(slog.DiscardHandler))
	other := NewService(pool, nopBus{}, nil, Limits{}, slog.New(slog.DiscardHandler))
	here.now, other.now = clock, clock
	blocked := func(s *Service) bool {
		t.Helper()
		b, err := s.blocks(ctx, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if blocked(here) || blocked(other) {
		t.Fatal("blocked before any block")
	}
	if _, err := here.Block(ctx, 1, BlockInput{UserID: 2}); err != nil {
		t.Fatal(err)
	}
	if !blocked(here) {
		t.Error("the recording process does not obey its block at once")
	}
	if blocked(other) {
		t.Error("another process read the database before its entry aged: the cache is not used")
	}
	now = now.Add(blockCacheTTL)
	if !blocked(other) {
		t.Errorf("another process still ignores the block after %v", blockCacheTTL)
	}
	if err := here.Unblock(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if blocked(here) {
		t.Error("the recording process does not obey its unblock at once")
	}
	now = now.Add(blockCacheTTL)
	if blocked(other) {
		t.Errorf("another process still obeys the block %v after the unblock", blockCacheTTL)
	}
}
