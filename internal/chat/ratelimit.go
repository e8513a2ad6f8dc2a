package chat

import (
	"sync"
	"time"
)

// rateLimiter is a per-user token bucket for writes, so one misbehaving
// client cannot flood the bus. It is per process: behind several instances
// the effective limit is multiplied, which is acceptable for abuse control.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[int64]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	// A burst under one would refuse every write: at least one goes through.
	return &rateLimiter{rate: rate, burst: float64(max(burst, 1)), now: now, buckets: map[int64]*bucket{}}
}

// allow takes one token for user, reporting whether there was one.
func (l *rateLimiter) allow(user int64) bool {
	if l == nil || l.rate <= 0 { // SendRate 0: no limit
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		// Full buckets carry no information; dropping them bounds memory.
		for id, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, id)
			}
		}
		l.sweep = now
	}
	b, ok := l.buckets[user]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[user] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
