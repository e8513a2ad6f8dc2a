package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/workers/persister"
)

// App is the composition root: every long-running piece is built here and
// run under one errgroup, so the first failure or a signal stops them all.
type App struct {
	cfg    Config
	logger *slog.Logger
	pool   *pgxpool.Pool
	waker  *pgbus.Waker
	bus    *pgbus.Bus
	svc    *api.Service
	rest   *api.REST

	httpLn net.Listener
}

// openApp connects to PostgreSQL and builds the shared pieces. migrate
// applies migrations first (chat dev, chat migrate).
func openApp(ctx context.Context, cfg Config, logger *slog.Logger, migrate bool) (*App, error) {
	if migrate {
		if created, err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		} else if created {
			logger.Info("created database", "url", redact(cfg.DatabaseURL))
		}
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact(cfg.DatabaseURL), err)
	}
	a := &App{cfg: cfg, logger: logger, pool: pool}
	if migrate {
		applied, err := db.Migrate(ctx, pool)
		if err != nil {
			pool.Close()
			return nil, err
		}
		if len(applied) > 0 {
			logger.Info("applied migrations", "versions", applied)
		}
	}
	a.waker = pgbus.NewWaker(cfg.DatabaseURL, logger.With("component", "bus"))
	a.bus = pgbus.New(pool, a.waker, logger.With("component", "bus"))
	if migrate {
		if err := a.bus.Init(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	verifier, err := auth.NewVerifier([]byte(cfg.JWTSecret))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("JWT_SECRET: %w", err)
	}
	a.svc = api.NewService(pool, a.bus, nil, api.Limits{
		MaxTextRunes: cfg.MaxTextRunes, SendRate: cfg.SendRate, SendBurst: cfg.SendBurst,
	}, logger.With("component", "api"))
	a.rest = api.NewREST(a.svc, verifier, logger.With("component", "http"))
	return a, nil
}

func (a *App) Close() { a.pool.Close() }

// workerHandler builds the handler of a named worker.
func (a *App) workerHandler(name string) (events.Handler, error) {
	switch name {
	case events.WorkerPersister:
		return persister.New(a.pool, a.logger.With("worker", name)), nil
	}
	return nil, fmt.Errorf("unknown worker %q (known: %s)", name, events.WorkerPersister)
}

// parts selects what one process runs.
type parts struct {
	api     bool
	workers []string
}

// listen binds the HTTP listener early so callers (and tests) learn the
// address before serving starts.
func (a *App) listen() error {
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("CHAT_HTTP_ADDR %s: %w", a.cfg.HTTPAddr, err)
	}
	a.httpLn = ln
	return nil
}

// run runs the selected parts until ctx ends, then shuts down gracefully.
func (a *App) run(ctx context.Context, p parts) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.waker.Run(ctx) })
	for _, name := range p.workers {
		h, err := a.workerHandler(name)
		if err != nil {
			return err
		}
		g.Go(func() error {
			err := pgbus.Consume(ctx, a.pool, a.waker, name, h, pgbus.ConsumerConfig{
				Concurrency: a.cfg.WorkerConc, MaxAttempts: a.cfg.WorkerAttempts, FallbackPoll: a.cfg.FallbackPoll,
			}, a.logger)
			if err != nil {
				return fmt.Errorf("worker %s: %w", name, err)
			}
			return nil
		})
	}
	if p.api {
		if a.httpLn == nil {
			if err := a.listen(); err != nil {
				return err
			}
		}
		srv := &http.Server{Handler: a.rest, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn)}
		g.Go(func() error {
			if err := srv.Serve(a.httpLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownGrace)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	return g.Wait()
}
