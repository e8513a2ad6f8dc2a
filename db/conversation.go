package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TxBeginner is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx.
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// DirectKey names the direct conversation between two users, whatever the
// order they are given in.
func DirectKey(a, b int64) string {
	if a > b {
		a, b = b, a
	}
	return fmt.Sprintf("%d:%d", a, b)
}

// GetOrCreateDirect returns the direct conversation between a and b,
// creating it with id newID if there is none. Two concurrent first messages
// between the same pair end with one conversation: the loser's insert does
// nothing and its follow-up read, a new statement with a new snapshot, sees
// the winner's committed row.
func GetOrCreateDirect(ctx context.Context, conn TxBeginner, newID uuid.UUID, a, b int64) (id uuid.UUID, created bool, err error) {
	return GetOrCreateDirectAt(ctx, conn, newID, a, b, time.Time{})
}

// GetOrCreateDirectAt is GetOrCreateDirect creating the conversation as of
// at (zero: now), the time of its ConversationCreated event.
func GetOrCreateDirectAt(ctx context.Context, conn TxBeginner, newID uuid.UUID, a, b int64, at time.Time) (id uuid.UUID, created bool, err error) {
	if a <= 0 || b <= 0 || a == b {
		return uuid.Nil, false, fmt.Errorf("direct conversation needs two distinct positive user ids, got %d and %d", a, b)
	}
	key := DirectKey(a, b)
	// Fast path: after the first message the conversation exists, and a
	// plain read avoids a write transaction on every send.
	if q, ok := conn.(DBTX); ok {
		id, err := New(q).GetConversationByDirectKey(ctx, &key)
		if err == nil {
			return id, false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return uuid.Nil, false, fmt.Errorf("read conversation %s: %w", key, err)
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		q := New(tx)
		var createdAt *time.Time
		if !at.IsZero() {
			createdAt = &at
		}
		got, err := q.InsertDirectConversation(ctx, InsertDirectConversationParams{ID: newID, DirectKey: &key, CreatedAt: createdAt})
		if errors.Is(err, pgx.ErrNoRows) {
			id, err = q.GetConversationByDirectKey(ctx, &key)
			if err != nil {
				return fmt.Errorf("read conversation %s: %w", key, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("insert conversation %s: %w", key, err)
		}
		id, created = got, true
		for _, u := range []int64{a, b} {
			if err := q.AddParticipant(ctx, AddParticipantParams{ConversationID: id, UserID: u}); err != nil {
				return fmt.Errorf("add participant %d: %w", u, err)
			}
		}
		return nil
	})
	return id, created, err
}

// InTx runs fn in a transaction. With asyncCommit the commit does not wait
// for the disk flush: only for what may be lost in a crash (ephemeral
// events), never for what a client or a queue was told is stored.
func InTx(ctx context.Context, conn TxOptionsBeginner, asyncCommit bool, fn func(tx pgx.Tx) error) error {
	var opts pgx.TxOptions
	if asyncCommit {
		// One round trip for both statements.
		opts.BeginQuery = "BEGIN; SET LOCAL synchronous_commit TO off"
	}
	return pgx.BeginTxFunc(ctx, conn, opts, fn)
}

// TxOptionsBeginner is satisfied by *pgxpool.Pool and *pgx.Conn.
type TxOptionsBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// ApplyGroupRole sets target's role in a group as of at (last writer
// wins); making them the owner makes the owner (actor) an admin, so that a
// group has one owner. The ingress and the persister apply a role change
// with it.
func ApplyGroupRole(ctx context.Context, q *Queries, convID uuid.UUID, actor, target int64, role string, at time.Time) error {
	if _, err := q.SetGroupRole(ctx, SetGroupRoleParams{Role: role, At: at, ConversationID: convID, UserID: target}); err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	if role == "owner" {
		if _, err := q.SetGroupRole(ctx, SetGroupRoleParams{Role: "admin", At: at, ConversationID: convID, UserID: actor}); err != nil {
			return fmt.Errorf("set the former owner's role: %w", err)
		}
	}
	return nil
}
