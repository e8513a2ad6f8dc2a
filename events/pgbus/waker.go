package pgbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/internal/retry"
)

// Waker turns "this queue has new rows" into an immediate re-query by the
// consumer that owns them: directly in this process, through LISTEN/NOTIFY
// across processes. A lost notification only delays delivery until the
// consumers' fallback poll.
type Waker struct {
	dsn    string
	logger *slog.Logger
	// self marks this process's notifications, which its listener skips:
	// its consumers were woken directly already.
	self string

	mu      sync.Mutex
	subs    map[string][]wakeSub
	pending map[string]bool // payloads to notify other processes of
	kick    chan struct{}
	later   map[string]bool // payloads to announce when the timer fires
	timer   *time.Timer     // pending AnnounceWithin; nil when none
}

// wakeSub is one consumer: it owns the queue partitions p with p%parts == part.
type wakeSub struct {
	ch          chan struct{}
	part, parts int
}

// NewWaker returns a waker; call Run to listen for notifications. While Run
// runs it holds two connections of its own to dsn: one LISTEN, one NOTIFY.
func NewWaker(dsn string, logger *slog.Logger) *Waker {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Waker{dsn: dsn, logger: logger, self: hex.EncodeToString(b[:]),
		subs: map[string][]wakeSub{}, pending: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// Announce tells consumers that a committed publish added rows for these
// "worker/partition" payloads: this process's consumers at once, other
// processes' through a NOTIFY sent outside the publishing transaction.
// (PostgreSQL serializes the commits of notifying transactions, disk flush
// included; publishing must not queue behind that.)
func (w *Waker) Announce(payloads []string) {
	if len(payloads) == 0 {
		return
	}
	for _, p := range payloads {
		w.wake(parsePayload(p))
	}
	w.mu.Lock()
	for _, p := range payloads {
		w.pending[p] = true
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// AnnounceWithin announces payloads within d rather than at once, together
// with whatever else is announced this way meanwhile: for queues whose
// events a fast path handles already (Bus.HandOff), whose consumers then
// gain more from larger batches than from promptness.
func (w *Waker) AnnounceWithin(payloads []string, d time.Duration) {
	if len(payloads) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.later == nil {
		w.later = map[string]bool{}
	}
	for _, p := range payloads {
		w.later[p] = true
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(d, func() {
			w.mu.Lock()
			batch := make([]string, 0, len(w.later))
			for p := range w.later {
				batch = append(batch, p)
			}
			clear(w.later)
			w.timer = nil
			w.mu.Unlock()
			w.Announce(batch)
		})
	}
}

func parsePayload(p string) (topic string, part int) {
	if t, n, ok := strings.Cut(p, "/"); ok {
		if v, err := strconv.Atoi(n); err == nil {
			return t, v
		}
	}
	return p, -1
}

// Wake signals every consumer of topic. It never blocks: a pending signal
// already guarantees a re-query.
func (w *Waker) Wake(topic string) { w.wake(topic, -1) }

// wake signals the consumers of topic that own partition part (all of them
// when part < 0). Waking only the owner spares the others an empty query.
func (w *Waker) wake(topic string, part int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.subs[topic] {
		if part >= 0 && part%s.parts != s.part {
			continue
		}
		select {
		case s.ch <- struct{}{}:
		default:
		}
	}
}

func (w *Waker) wakeAll() {
	w.mu.Lock()
	topics := make([]string, 0, len(w.subs))
	for t := range w.subs {
		topics = append(topics, t)
	}
	w.mu.Unlock()
	for _, t := range topics {
		w.Wake(t)
	}
}

func (w *Waker) subscribe(topic string, part, parts int) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.subs[topic] = append(w.subs[topic], wakeSub{ch: ch, part: part, parts: max(parts, 1)})
	w.mu.Unlock()
	return ch
}

// Run listens for other processes' notifications and sends this process's,
// until ctx ends, reconnecting after errors.
func (w *Waker) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.loop(ctx, "sending", w.notify)
	}()
	w.loop(ctx, "receiving", w.listen)
	<-done
	return nil
}

func (w *Waker) loop(ctx context.Context, what string, run func(context.Context) error) {
	// Reconnect with no bound on attempts: polling covers for the
	// notifications meanwhile.
	reconnect := retry.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	_, _ = reconnect.Do(ctx, func(ctx context.Context) error {
		if err := run(ctx); err != nil {
			return err
		}
		// run returns nil when ctx ends; a nil before that is a lost
		// connection all the same.
		return errors.New("connection closed")
	}, func(error) bool { return ctx.Err() == nil }, func(_ int, err error, wait time.Duration) {
		w.logger.Warn("event notifications interrupted; consumers fall back to polling until reconnected",
			"direction", what, "err", err, "retry_in", wait)
		// Anything published while disconnected is found by this re-query.
		w.wakeAll()
	})
}

func (w *Waker) listen(ctx context.Context) error {
	conn, err := w.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	w.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		// The payload is "sender|worker/partition".
		sender, payload, _ := strings.Cut(n.Payload, "|")
		if sender == w.self {
			continue
		}
		w.wake(parsePayload(payload))
	}
}

// notify sends pending announcements, coalesced: under load one NOTIFY
// statement carries what many publishes added.
func (w *Waker) notify(ctx context.Context) error {
	conn, err := w.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		}
		w.mu.Lock()
		batch := make([]string, 0, len(w.pending))
		for p := range w.pending {
			batch = append(batch, w.self+"|"+p)
		}
		clear(w.pending)
		w.mu.Unlock()
		if _, err := conn.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, notifyChannel, batch); err != nil {
			return err
		}
	}
}

// connect opens one connection. The DSN is parsed as the pool parses it, so
// pgxpool's own pool_* parameters are not sent to the server as settings.
func (w *Waker) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgxpool.ParseConfig(w.dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg.ConnConfig)
}

// Flush sends pending announcements once, for short-lived processes that do
// not Run the waker (chat replay, chat deadletters redrive).
func (w *Waker) Flush(ctx context.Context) error {
	w.mu.Lock()
	batch := make([]string, 0, len(w.pending))
	for p := range w.pending {
		batch = append(batch, w.self+"|"+p)
	}
	clear(w.pending)
	w.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	conn, err := w.connect(ctx)
	if err != nil {
		return fmt.Errorf("notify workers: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, notifyChannel, batch); err != nil {
		return fmt.Errorf("notify workers: %w", err)
	}
	return nil
}
