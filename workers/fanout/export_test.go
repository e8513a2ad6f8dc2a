package fanout

import (
	"context"
	"time"
)

// SetSleep makes every retry of f wait through sleep, so that tests see the
// waits instead of taking them.
func (f *Fanout) SetSleep(sleep func(ctx context.Context, d time.Duration) error) {
	f.retry.Sleep, f.greeting.Sleep = sleep, sleep
}
