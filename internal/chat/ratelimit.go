package chat

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Write is a kind of write a user makes, each with its own per-user rate
// limit (Rates), so that a flood of one (typing) cannot starve another
// (messages).
type Write int

const (
	WriteSend         Write = iota // messages and edits
	WriteRead                      // read receipts
	WriteUpload                    // uploads and presigned uploads
	WriteTyping                    // typing indicators: dropped silently over the limit
	WritePing                      // WebSocket pings: each refreshes the connection record
	WriteConnect                   // WebSocket connections: each publishes a greeting
	WriteSettings                  // settings changes, deletions of conversations and messages, unsend, reactions
	WriteConversation              // conversations created (get-or-create of a new one)
	numWrites
)

var writeNames = [numWrites]string{"send", "read", "upload", "typing", "ping", "connect", "settings", "conversation"}

// String names the kind as its configuration does (CHAT_RATE_SEND, ...).
func (w Write) String() string { return writeNames[w] }

// Writes lists every kind of write.
func Writes() []Write {
	out := make([]Write, numWrites)
	for i := range out {
		out[i] = Write(i)
	}
	return out
}

// Rate is a token bucket: up to Burst writes at once, refilled at
// PerSecond. A PerSecond of 0 means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) String() string {
	if r.PerSecond <= 0 {
		return "0"
	}
	return fmt.Sprintf("%g/s,%d", r.PerSecond, r.Burst)
}

// Rates are the per-user limits, by kind of write.
type Rates [numWrites]Rate

// DefaultRates are the limits a server runs with unless configured:
// generous for a person on a phone, tight for a script. Conversations are
// counted per hour: creating one puts it in the other user's list, so this
// is what stops a user from filling strangers' lists.
func DefaultRates() Rates {
	var r Rates
	r[WriteSend] = Rate{PerSecond: 20, Burst: 40}
	r[WriteRead] = Rate{PerSecond: 20, Burst: 40}
	r[WriteUpload] = Rate{PerSecond: 1, Burst: 10}
	r[WriteTyping] = Rate{PerSecond: 2, Burst: 5}
	r[WritePing] = Rate{PerSecond: 1, Burst: 10}
	r[WriteConnect] = Rate{PerSecond: 20.0 / 60, Burst: 20}
	r[WriteSettings] = Rate{PerSecond: 5, Burst: 20}
	r[WriteConversation] = Rate{PerSecond: 30.0 / 3600, Burst: 30}
	return r
}

// limiter holds a token bucket per user and kind of write. It is per
// process: behind several instances the effective limit is multiplied,
// which is acceptable for abuse control.
type limiter struct {
	rates Rates
	now   func() time.Time

	mu      sync.Mutex
	buckets map[limitKey]*bucket
	sweep   time.Time
}

type limitKey struct {
	write Write
	user  int64
}

type bucket struct {
	tokens float64
	last   time.Time
}

// sweepEvery is how often idle buckets are dropped.
const sweepEvery = time.Minute

func newLimiter(rates Rates, now func() time.Time) *limiter {
	for i, r := range rates {
		// A burst under one would refuse every write: at least one goes through.
		rates[i].Burst = max(r.Burst, 1)
	}
	return &limiter{rates: rates, now: now, buckets: map[limitKey]*bucket{}}
}

// take takes one token of w for user. When there is none it reports how
// long until there is one.
func (l *limiter) take(w Write, user int64) (ok bool, retryAfter time.Duration) {
	rate := l.rates[w]
	if rate.PerSecond <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > sweepEvery {
		// A full bucket carries no information: dropping it bounds memory
		// to the users who wrote within a bucket's refill time.
		for k, b := range l.buckets {
			if l.refill(k.write, b, now) >= float64(l.rates[k.write].Burst) {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	k := limitKey{w, user}
	b, found := l.buckets[k]
	if !found {
		b = &bucket{tokens: float64(rate.Burst), last: now}
		l.buckets[k] = b
	}
	b.tokens, b.last = l.refill(w, b, now), now
	if b.tokens < 1 {
		wait := (1 - b.tokens) / rate.PerSecond
		return false, time.Duration(math.Ceil(wait * float64(time.Second)))
	}
	b.tokens--
	return true, 0
}

func (l *limiter) refill(w Write, b *bucket, now time.Time) float64 {
	r := l.rates[w]
	return min(float64(r.Burst), b.tokens+now.Sub(b.last).Seconds()*r.PerSecond)
}

// size is how many buckets are held, for tests of the bound.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
