package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/parleychat/parley/internal/lambdafn"
)

// Every Lambda execution environment opens its own PostgreSQL pool, so the
// most connections the functions can hold is the sum over functions of
// reserved concurrency × pool size. The synth refuses a stack where that
// sum does not fit the server's max_connections, less what is kept back.

// dbHeadroom is kept out of the functions' share: RDS's own sessions,
// operators, `chat migrate` from a laptop, a replay.
const dbHeadroom = 10

// migratePoolSize: Migrate works on one connection (it holds an advisory lock).
const migratePoolSize = 1

// edgeConcurrency is the default reserved concurrency of each function that
// is not a worker; workers take theirs from workerSizing. Together they fit
// a 100-connection server at pool size 2, with room for one more worker.
func edgeConcurrency() map[string]int {
	return map[string]int{
		lambdafn.WSConnect:    6,
		lambdafn.WSDisconnect: 3,
		lambdafn.WSDefault:    10, // every frame: sends, reads, typing, pings
		lambdafn.API:          8,
		lambdafn.Migrate:      1, // two migrators would only wait on each other's lock
	}
}

// minWorkerConcurrency is the least an SQS event source's maximum
// concurrency may be, and that is set to the function's reserved concurrency
// (so the poller never invokes into throttles and bounces messages).
const minWorkerConcurrency = 2

// Concurrency is handler's reserved concurrency: the stage's override, or
// the default.
func (c Config) Concurrency(handler string) int {
	if n, ok := c.ReservedConcurrency[handler]; ok {
		return n
	}
	if h, ok := lambdafn.Find(handler); ok && h.Worker != "" {
		for _, w := range Workers() {
			if w.Name == h.Worker {
				return w.Concurrency
			}
		}
	}
	return edgeConcurrency()[handler]
}

// PoolSize is handler's CHAT_DB_MAX_CONNS.
func (c Config) PoolSize(handler string) int {
	if handler == lambdafn.Migrate {
		return migratePoolSize
	}
	return c.DBPoolSize
}

// DBConnections is the most connections all functions together can open.
func (c Config) DBConnections() int {
	var n int
	for _, h := range lambdafn.Names() {
		n += c.Concurrency(h) * c.PoolSize(h)
	}
	return n
}

func (c Config) checkConnections() error {
	var errs []error
	if c.DBPoolSize < 1 || c.DBPoolSize > 10 {
		errs = append(errs, fmt.Errorf("%s: %d, want 1 to 10 (one invocation at a time needs 1 or 2)", ctxDBPoolSize, c.DBPoolSize))
	}
	if c.DBMaxConnections <= dbHeadroom {
		errs = append(errs, fmt.Errorf("%s: %d, want more than the %d kept for operators", ctxDBMaxConnections, c.DBMaxConnections, dbHeadroom))
	}
	for h := range c.ReservedConcurrency {
		if _, ok := lambdafn.Find(h); !ok {
			errs = append(errs, fmt.Errorf("%s: no function %q (want one of %s)", ctxReserved, h, strings.Join(lambdafn.Names(), ", ")))
		}
	}
	var terms []string
	for _, h := range lambdafn.Names() {
		n := c.Concurrency(h)
		hf, _ := lambdafn.Find(h)
		_, overridden := c.ReservedConcurrency[h]
		switch {
		case hf.Worker != "" && n == 0 && !overridden:
			errs = append(errs, fmt.Errorf("worker %s has no Concurrency in workerSizing (infra/workers.go)", hf.Worker))
		case hf.Worker != "" && n < minWorkerConcurrency:
			errs = append(errs, fmt.Errorf("%s: %s=%d, a worker needs at least %d (its SQS event source's maximum concurrency)", ctxReserved, h, n, minWorkerConcurrency))
		case n < 1:
			errs = append(errs, fmt.Errorf("%s: %s=%d, want at least 1", ctxReserved, h, n))
		}
		terms = append(terms, fmt.Sprintf("%s %d×%d", h, n, c.PoolSize(h)))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if total, budget := c.DBConnections(), c.DBMaxConnections-dbHeadroom; total > budget {
		slices.Sort(terms)
		return fmt.Errorf("%s × %s = %d connections (%s), over %s %d less %d kept for operators: lower them, or raise %s to the server's max_connections",
			ctxReserved, ctxDBPoolSize, total, strings.Join(terms, ", "), ctxDBMaxConnections, c.DBMaxConnections, dbHeadroom, ctxDBMaxConnections)
	}
	return nil
}
