// Package notifier is the worker that pushes notifications to the devices
// of users who were not online for a message (PushRequested, published by
// fanout for messages no live connection of the recipient took), and
// updates the badge on a reader's devices after a read (MessageRead).
//
// Idempotent under redelivery and replay: before a message is pushed to a
// device, the pair is claimed in push_deliveries, so a second delivery of
// the same PushRequested finds it claimed and pushes nothing; a send that
// failed for a reason worth retrying gives its claim back and fails the
// event, so the queue retries it. Replay for recovery does not re-notify old
// messages: requests for messages older than MaxAge are dropped (and the
// claims outlive MaxAge). A crash between the claim and the send loses that
// push rather than repeating it: a missed notification is caught up by the
// app's sync, a repeated one is seen twice.
//
// One device's failure never fails another's, nor another user's: a token
// the provider calls invalid deletes that device, throttling and 5xx are
// retried by the provider within a small budget and then by the queue, and
// any other refusal is logged and not retried.
package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/push"
)

// Receipts is a provider whose answers come later, by ticket (Expo).
type Receipts interface {
	Receipts(ctx context.Context, ids []string) (map[string]error, error)
}

var (
	_ Receipts            = (*push.Expo)(nil)
	_ events.Handler      = (*Notifier)(nil)
	_ events.BatchHandler = (*Notifier)(nil)
)

const (
	// maxConcurrent bounds the events of a batch handled at once: each
	// holds a database connection while its provider answers.
	maxConcurrent = 4
	// previewRunes bounds a text preview; the platforms cut longer ones.
	previewRunes = 178
	// receiptBatch bounds the tickets checked per sweep.
	receiptBatch = 1000
	// ticketLifetime: Expo keeps receipts for a day; tickets older than
	// that will never get one.
	ticketLifetime = 24 * time.Hour
)

// Config says what a push looks like and which requests are too old.
type Config struct {
	// Title is the notification's title; "{sender_id}" is replaced by the
	// sender's user id (the chat has no profiles). Default "New message".
	Title string
	// Preview shows the message's text (or "📷 Photo", …) as the body;
	// false sends no content at all.
	Preview bool
	// MaxAge drops requests for messages older than this, so that replay
	// and long outages never notify old messages. Default 1h.
	MaxAge time.Duration
	// ReceiptDelay is how old an Expo ticket is before its receipt is
	// fetched. Default 15m (Expo's advice).
	ReceiptDelay time.Duration
	// SweepEvery is how often, at most, a batch also checks receipts and
	// prunes old claims. Default 1m.
	SweepEvery time.Duration
}

// DefaultConfig is what a server runs with unless configured.
func DefaultConfig() Config {
	return Config{Title: "New message", Preview: true, MaxAge: time.Hour, ReceiptDelay: 15 * time.Minute, SweepEvery: time.Minute}
}

// Notifier handles events for the notifier worker.
type Notifier struct {
	q        *db.Queries
	provider push.Provider
	receipts Receipts // nil without Expo
	cfg      Config
	logger   *slog.Logger
	now      func() time.Time

	mu    sync.Mutex
	swept time.Time
}

// New returns a Notifier. receipts may be nil; a nil logger discards logs.
func New(dbtx db.DBTX, provider push.Provider, receipts Receipts, cfg Config, logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	def := DefaultConfig()
	if cfg.Title == "" {
		cfg.Title = def.Title
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = def.MaxAge
	}
	if cfg.ReceiptDelay <= 0 {
		cfg.ReceiptDelay = def.ReceiptDelay
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = def.SweepEvery
	}
	return &Notifier{q: db.New(dbtx), provider: provider, receipts: receipts, cfg: cfg, logger: logger, now: time.Now}
}

// SetClock replaces the clock (tests).
func (n *Notifier) SetClock(now func() time.Time) { n.now = now }

// Handle handles one event.
func (n *Notifier) Handle(ctx context.Context, e events.Envelope) error {
	return n.HandleBatch(ctx, []events.Envelope{e})[0]
}

// HandleBatch handles a batch's events side by side and reports per event;
// then, at most every SweepEvery, checks Expo receipts and prunes old
// claims (on every transport, so Lambda needs no timer for it).
func (n *Notifier) HandleBatch(ctx context.Context, envs []events.Envelope) []error {
	errs := make([]error, len(envs))
	var g errgroup.Group
	g.SetLimit(maxConcurrent)
	for i, e := range envs {
		g.Go(func() error {
			switch e.Type {
			case events.TypePushRequested:
				errs[i] = n.pushMessage(ctx, e)
			case events.TypeMessageRead:
				errs[i] = n.updateBadge(ctx, e)
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil
	n.sweep(ctx)
	return errs
}

// pushMessage pushes one message to its recipient's devices.
func (n *Notifier) pushMessage(ctx context.Context, e events.Envelope) error {
	var m events.PushRequestedV1
	if err := e.Unmarshal(&m); err != nil {
		return err
	}
	log := n.logger.With("message_id", m.MessageID, "user_id", m.RecipientID)
	if age := n.now().Sub(m.CreatedAt); age > n.cfg.MaxAge {
		log.InfoContext(ctx, "notifier: message too old to push", "age", age.Round(time.Second))
		return nil
	}
	msgID := uuid.MustParse(m.MessageID) // validated
	pc, err := n.q.PushContext(ctx, db.PushContextParams{UserID: m.RecipientID, MessageID: msgID})
	if errors.Is(err, pgx.ErrNoRows) {
		// The persister has not stored it yet: the queue retries.
		return fmt.Errorf("notifier: message %s is not stored yet", m.MessageID)
	}
	if err != nil {
		return fmt.Errorf("notifier: message %s: %w", m.MessageID, err)
	}
	if pc.AlreadyRead || pc.Unsent || pc.Muted {
		log.DebugContext(ctx, "notifier: not pushed", "read", pc.AlreadyRead, "unsent", pc.Unsent, "muted", pc.Muted)
		return nil
	}
	devices, err := n.q.ListPushDevices(ctx, []int64{m.RecipientID})
	if err != nil {
		return fmt.Errorf("notifier: devices of user %d: %w", m.RecipientID, err)
	}
	if len(devices) == 0 {
		return nil
	}
	tokens := make([]string, len(devices))
	for i, d := range devices {
		tokens[i] = d.Token
	}
	claimed, err := n.q.ClaimPushDeliveries(ctx, db.ClaimPushDeliveriesParams{MessageID: msgID, Tokens: tokens, UserID: m.RecipientID})
	if err != nil {
		return fmt.Errorf("notifier: claim pushes of message %s: %w", m.MessageID, err)
	}
	if len(claimed) == 0 {
		return nil // pushed already: a redelivery or a replay
	}
	title, body := n.content(m)
	data := map[string]string{"type": "message", "conversation_id": m.ConversationID, "message_id": m.MessageID,
		"seq": strconv.FormatInt(pc.Seq, 10)}
	var ns []push.Notification
	for _, d := range devices {
		if !slices.Contains(claimed, d.Token) {
			continue
		}
		ns = append(ns, push.Notification{Platform: d.Platform, Token: d.Token, Title: title, Body: body,
			Badge: int(pc.Badge), CollapseID: m.ConversationID, Data: data})
	}
	return n.send(ctx, ns, m.RecipientID, &msgID)
}

// updateBadge sends a reader's devices the badge after a read, silently.
func (n *Notifier) updateBadge(ctx context.Context, e events.Envelope) error {
	var m events.MessageReadV1
	if err := e.Unmarshal(&m); err != nil {
		return err
	}
	if n.now().Sub(m.ReadAt) > n.cfg.MaxAge {
		return nil // a replayed read: the badge it had is long stale
	}
	devices, err := n.q.ListPushDevices(ctx, []int64{m.ReaderID})
	if err != nil {
		return fmt.Errorf("notifier: devices of user %d: %w", m.ReaderID, err)
	}
	if len(devices) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(m.MessageIDs))
	for i, id := range m.MessageIDs {
		ids[i] = uuid.MustParse(id) // validated
	}
	badge, err := n.q.BadgeAfterRead(ctx, db.BadgeAfterReadParams{UserID: m.ReaderID, Ids: ids})
	if err != nil {
		return fmt.Errorf("notifier: badge of user %d: %w", m.ReaderID, err)
	}
	data := map[string]string{"type": "badge", "conversation_id": m.ConversationID}
	ns := make([]push.Notification, len(devices))
	for i, d := range devices {
		ns[i] = push.Notification{Platform: d.Platform, Token: d.Token, Badge: int(badge), Data: data, Silent: true}
	}
	return n.send(ctx, ns, m.ReaderID, nil)
}

// send sends ns to user's devices and acts on each answer. msgID, for a
// message's push, is the claim a retryable failure gives back.
func (n *Notifier) send(ctx context.Context, ns []push.Notification, user int64, msgID *uuid.UUID) error {
	var retry error
	for i, res := range n.provider.Send(ctx, ns) {
		d := ns[i]
		log := n.logger.With("user_id", user, "platform", d.Platform)
		switch err := res.Err; {
		case err == nil:
			if res.Ticket != "" && msgID != nil {
				if err := n.q.SetPushTicket(ctx, db.SetPushTicketParams{TicketID: &res.Ticket, MessageID: *msgID, Token: d.Token}); err != nil {
					log.WarnContext(ctx, "notifier: record push ticket", "err", err)
				}
			}
		case errors.Is(err, push.ErrInvalidToken):
			n.forget(ctx, d.Token, user, err)
		case push.IsRetryable(err) || ctx.Err() != nil:
			if msgID != nil {
				if rerr := n.q.ReleasePushDelivery(ctx, db.ReleasePushDeliveryParams{MessageID: *msgID, Token: d.Token}); rerr != nil {
					log.WarnContext(ctx, "notifier: give back push claim", "err", rerr)
				}
			}
			retry = fmt.Errorf("notifier: push to a device of user %d: %w", user, err)
		default:
			log.WarnContext(ctx, "notifier: push refused; not retried", "err", err)
		}
	}
	return retry
}

// forget deletes a device whose token the provider called invalid.
func (n *Notifier) forget(ctx context.Context, token string, user int64, why error) {
	if _, err := n.q.DeletePushDevice(ctx, db.DeletePushDeviceParams{Token: token, UserID: user}); err != nil {
		n.logger.WarnContext(ctx, "notifier: delete invalid device", "user_id", user, "err", err)
		return
	}
	n.logger.InfoContext(ctx, "notifier: deleted device with an invalid token", "user_id", user, "reason", why)
}

// content is a message's title and body.
func (n *Notifier) content(m events.PushRequestedV1) (title, body string) {
	title = strings.ReplaceAll(n.cfg.Title, "{sender_id}", strconv.FormatInt(m.SenderID, 10))
	if !n.cfg.Preview {
		return title, ""
	}
	switch m.ContentType {
	case events.ContentImage:
		return title, "📷 Photo"
	case events.ContentVideo:
		return title, "🎥 Video"
	case events.ContentAudio:
		return title, "🎤 Audio"
	}
	return title, preview(m.TextContent)
}

func preview(s string) string {
	if utf8.RuneCountInString(s) <= previewRunes {
		return s
	}
	r := []rune(s)
	return string(r[:previewRunes-1]) + "…"
}

// sweep checks Expo receipts of tickets old enough (deleting devices they
// call unregistered) and prunes claims no request can need any more. A
// failure is logged: the next sweep tries again.
func (n *Notifier) sweep(ctx context.Context) {
	now := n.now()
	n.mu.Lock()
	due := now.Sub(n.swept) >= n.cfg.SweepEvery
	if due {
		n.swept = now
	}
	n.mu.Unlock()
	if !due || ctx.Err() != nil {
		return
	}
	if n.receipts != nil {
		if err := n.checkReceipts(ctx, now); err != nil {
			n.logger.WarnContext(ctx, "notifier: check push receipts", "err", err)
		}
	}
	// Claims are what stops a second push; requests older than MaxAge are
	// dropped anyway, so older claims are dead weight.
	keep := max(2*n.cfg.MaxAge, ticketLifetime)
	if _, err := n.q.PrunePushDeliveries(ctx, now.Add(-keep)); err != nil {
		n.logger.WarnContext(ctx, "notifier: prune push records", "err", err)
	}
}

// CheckReceipts checks the receipts of Expo tickets old enough now.
func (n *Notifier) CheckReceipts(ctx context.Context) error {
	if n.receipts == nil {
		return nil
	}
	return n.checkReceipts(ctx, n.now())
}

func (n *Notifier) checkReceipts(ctx context.Context, now time.Time) error {
	rows, err := n.q.ListPushTickets(ctx, db.ListPushTicketsParams{Before: now.Add(-n.cfg.ReceiptDelay), MaxRows: receiptBatch})
	if err != nil || len(rows) == 0 {
		return err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.TicketID
	}
	answers, err := n.receipts.Receipts(ctx, ids)
	if err != nil {
		return err
	}
	var done []string
	for _, r := range rows {
		rerr, ok := answers[r.TicketID]
		switch {
		case ok && errors.Is(rerr, push.ErrInvalidToken):
			n.forget(ctx, r.Token, r.UserID, rerr)
		case ok && rerr != nil:
			n.logger.WarnContext(ctx, "notifier: push receipt reports an error", "user_id", r.UserID, "err", rerr)
		case !ok && now.Sub(r.PushedAt) < ticketLifetime:
			continue // not ready yet
		}
		done = append(done, r.TicketID)
	}
	return n.q.ClearPushTickets(ctx, done)
}
