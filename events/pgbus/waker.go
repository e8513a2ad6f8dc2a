package pgbus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5"
)

// Waker turns "this queue has new rows" into an immediate re-query by the
// consumers of that queue: from publishes in this process directly, and from
// other processes through LISTEN/NOTIFY.
type Waker struct {
	dsn    string
	logger *slog.Logger

	mu   sync.Mutex
	subs map[string][]chan struct{}
}

// NewWaker returns a waker; call Run to listen for other processes.
func NewWaker(dsn string, logger *slog.Logger) *Waker {
	return &Waker{dsn: dsn, logger: logger, subs: map[string][]chan struct{}{}}
}

// Wake signals every consumer of topic. It never blocks: a pending signal
// already guarantees a re-query.
func (w *Waker) Wake(topic string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ch := range w.subs[topic] {
		select {
		case ch <- struct{}{}:
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

func (w *Waker) subscribe(topic string) chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.subs[topic] = append(w.subs[topic], ch)
	w.mu.Unlock()
	return ch
}

// Run listens for notifications until ctx ends, reconnecting after errors.
func (w *Waker) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := w.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.logger.Warn("event notifications interrupted; consumers fall back to polling until reconnected", "err", err, "retry_in", backoff)
		// Anything published while disconnected is found by this re-query.
		w.wakeAll()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Waker) listen(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, w.dsn)
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
		w.Wake(n.Payload)
	}
}

// wakeBackoff is Watermill's BackoffManager for one consumer. The subscriber
// calls HandleError synchronously from its consume loop after an empty
// query, so blocking here until a wake-up (or the fallback poll) is what
// makes delivery latency independent of the poll interval.
type wakeBackoff struct {
	wake     <-chan struct{}
	done     <-chan struct{}
	fallback time.Duration
	retry    time.Duration
}

func (b wakeBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if err != nil {
		logger.Error("querying queue failed", err, nil)
		return b.retry
	}
	if !noMsg {
		return 0
	}
	t := time.NewTimer(b.fallback)
	defer t.Stop()
	select {
	case <-b.wake:
	case <-t.C:
	case <-b.done:
	}
	return 0
}
