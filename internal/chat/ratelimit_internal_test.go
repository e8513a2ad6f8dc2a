package chat

import (
	"testing"
	"time"
)

// The limiter's memory is bounded: a bucket that has refilled is dropped
// at the next sweep, so only users who wrote lately are held.
func TestLimiterForgetsIdleUsers(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var rates Rates
	rates[WriteSend] = Rate{PerSecond: 1, Burst: 2}
	rates[WriteConversation] = Rate{PerSecond: 1.0 / 3600, Burst: 1}
	l := newLimiter(rates, func() time.Time { return now })
	for user := range int64(10_000) {
		if ok, _ := l.take(WriteSend, user); !ok {
			t.Fatalf("user %d refused a first write", user)
		}
	}
	l.take(WriteConversation, 1)
	if n := l.size(); n != 10_001 {
		t.Fatalf("%d buckets, want 10001", n)
	}
	// Two minutes on: the send buckets are full again, the hourly one not.
	now = now.Add(2 * time.Minute)
	l.take(WriteSend, 5)
	if n := l.size(); n != 2 {
		t.Fatalf("after the sweep %d buckets are held, want 2 (the hourly bucket and the new write)", n)
	}
	if ok, wait := l.take(WriteConversation, 1); ok || wait <= 0 || wait > time.Hour {
		t.Fatalf("the hourly limit was forgotten: ok=%v wait=%s", ok, wait)
	}
}

func TestLimiterRetryAfter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var rates Rates
	rates[WriteTyping] = Rate{PerSecond: 4, Burst: 1}
	l := newLimiter(rates, func() time.Time { return now })
	l.take(WriteTyping, 1)
	ok, wait := l.take(WriteTyping, 1)
	if ok || wait != 250*time.Millisecond {
		t.Fatalf("ok=%v wait=%s, want a refusal for 250ms", ok, wait)
	}
	now = now.Add(wait)
	if ok, _ := l.take(WriteTyping, 1); !ok {
		t.Fatal("refused after the wait it asked for")
	}
	if ok, _ := l.take(WriteSend, 1); !ok {
		t.Fatal("a kind without a rate was limited")
	}
}
