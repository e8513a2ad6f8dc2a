package push

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// sinkKeep is how many recent notifications a Sink remembers.
const sinkKeep = 200

// Sent is a notification a Sink recorded.
type Sent struct {
	Notification
	At time.Time `json:"at"`
}

// Sink is the development provider: it sends nothing, logs each
// notification and keeps the recent ones for Recent (chat dev lists them on
// a loopback-only endpoint), so the whole flow can be tried without
// credentials.
type Sink struct {
	logger *slog.Logger
	mu     sync.Mutex
	sent   []Sent
}

var _ Provider = (*Sink)(nil)

// NewSink returns an empty sink; a nil logger discards logs.
func NewSink(logger *slog.Logger) *Sink {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sink{logger: logger}
}

func (s *Sink) Send(ctx context.Context, ns []Notification) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range ns {
		s.logger.InfoContext(ctx, "push (development sink)", "platform", n.Platform, "token", n.Token,
			"title", n.Title, "body", n.Body, "badge", n.Badge, "collapse_id", n.CollapseID, "silent", n.Silent, "data", n.Data)
		s.sent = append(s.sent, Sent{Notification: n, At: time.Now().UTC()})
	}
	if over := len(s.sent) - sinkKeep; over > 0 {
		s.sent = slices.Delete(s.sent, 0, over)
	}
	return make([]Result, len(ns))
}

// Recent returns the recorded notifications, oldest first.
func (s *Sink) Recent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}
