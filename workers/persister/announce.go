package persister

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// Announcements: the entries a batch appended to the sync feed are
// published as FeedAppended, for fanout to post them, each with its
// position, to the connections opened in feed mode, and to confirm or push
// the messages those connections get instead of their own frames. So an
// announcement is part of its batch: published from the batch's
// transaction (the local bus writes it there; EventBridge gets it before
// the commit), and a failure to publish it fails the batch, which is
// retried whole. It is ephemeral (events.Ephemeral): not archived, since a
// replay appends nothing to announce.

// feedCloseGrace is how long after a user's feed connection was removed
// their entries are still announced (Held): longer than a message takes
// from its fanout, which counted on that connection to confirm or push it,
// to the persister.
const feedCloseGrace = time.Minute

type announcer struct {
	bus events.Publisher
	// listeners: announce only the entries of users who hold a connection
	// in feed mode (or removed one within feedCloseGrace), looked up in the
	// batch's transaction (the connection store is in this database).
	listeners bool
}

// announcements builds the FeedAppended events of the entries appended,
// in tx. Its error is a failed lookup, which leaves tx to be rolled back.
func (p *Persister) announcements(ctx context.Context, tx pgx.Tx, envs []events.Envelope, appended []db.AppendFeedRow) ([]events.Envelope, error) {
	a := p.announcer
	if a == nil || len(appended) == 0 {
		return nil, nil
	}
	if a.listeners {
		var users []int64
		for _, r := range appended {
			users = append(users, r.UserID)
		}
		slices.Sort(users)
		now := p.now()
		listening, err := db.New(tx).FeedListeners(ctx, db.FeedListenersParams{UserIds: slices.Compact(users), Now: now,
			ClosedAfter: now.Add(-feedCloseGrace)})
		if err != nil {
			return nil, fmt.Errorf("users in feed mode: %w", err)
		}
		appended = slices.DeleteFunc(slices.Clone(appended), func(r db.AppendFeedRow) bool {
			return !slices.Contains(listening, r.UserID)
		})
	}
	var out []events.Envelope
	for chunk := range slices.Chunk(appended, events.MaxFeedAppendedEntries) {
		m := events.FeedAppendedV1{Entries: make([]events.FeedEntryRef, len(chunk)), Held: a.listeners}
		for i, r := range chunk {
			m.Entries[i] = events.FeedEntryRef{UserID: r.UserID, Epoch: r.Epoch, Position: r.Position, ChangeID: r.ChangeID}
		}
		env, err := events.New(uuid.Must(uuid.NewV7()).String(), p.now(), 0, "", m)
		if err != nil {
			// Built from rows the database numbered: a bug, not bad input.
			p.logger.ErrorContext(ctx, "feed announcement not built", "entries", len(chunk), "err", err)
			continue
		}
		out = append(out, events.Caused(ctx, envs[0], env))
	}
	return out, nil
}

// announce publishes the announcements of the entries appended in tx,
// through ctx (whose scope, if any, is tx's: the local bus writes them
// there). An error leaves the batch to be retried.
func (p *Persister) announce(ctx context.Context, tx pgx.Tx, envs []events.Envelope, appended []db.AppendFeedRow) error {
	news, err := p.announcements(ctx, tx, envs, appended)
	if err != nil || len(news) == 0 {
		return err
	}
	if err := p.announcer.bus.Publish(events.EventContext(ctx, envs[0]), news...); err != nil {
		return fmt.Errorf("announce the feed entries of %d events: %w", len(envs), err)
	}
	return nil
}
