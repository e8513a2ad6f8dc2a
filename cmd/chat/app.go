package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/events/sqs"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/dynamostore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/internal/gateway"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/s3local"
	"github.com/parleychat/parley/workers/fanout"
	"github.com/parleychat/parley/workers/persister"
	"github.com/parleychat/parley/workers/thumbnailer"
)

// App is the composition root: every long-running piece is built here and
// run under one errgroup, so the first failure or a signal stops them all.
type App struct {
	cfg    Config
	logger *slog.Logger
	pool   *pgxpool.Pool

	// Local transport (CHAT_TRANSPORT=postgres).
	waker        *pgbus.Waker
	bus          *pgbus.Bus
	consumerPool *pgxpool.Pool

	publisher events.Publisher
	verifier  *auth.Verifier
	svc       *api.Service
	rest      *api.REST
	conns     connstore.Store
	media     *media.Store
	s3        *s3local.Server

	httpLn, adminLn, s3Ln net.Listener
}

// openApp connects to PostgreSQL and builds the shared pieces. migrate
// applies migrations first (chat dev, chat migrate).
func openApp(ctx context.Context, cfg Config, logger *slog.Logger, migrate bool) (*App, error) {
	a := &App{cfg: cfg, logger: logger}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if migrate {
		if created, err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		} else if created {
			logger.Info("created database", "url", redact(cfg.DatabaseURL))
		}
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		// pgx's default (max(4, CPUs)) starves a server whose requests and
		// workers all write; pool_max_conns in DATABASE_URL overrides this.
		pcfg.MaxConns = 20
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	a.pool = pool
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact(cfg.DatabaseURL), err)
	}
	if migrate {
		applied, err := db.Migrate(ctx, pool)
		if err != nil {
			return nil, err
		}
		if len(applied) > 0 {
			logger.Info("applied migrations", "versions", applied)
		}
	}
	if err := a.openBus(ctx, migrate); err != nil {
		return nil, err
	}
	if cfg.JWTSecret != "" { // workers verify no tokens
		if a.verifier, err = auth.NewVerifier([]byte(cfg.JWTSecret)); err != nil {
			return nil, fmt.Errorf("JWT_SECRET: %w", err)
		}
	}
	if err := a.openMedia(ctx); err != nil {
		return nil, err
	}
	var mediaAPI api.Media
	if a.media != nil {
		mediaAPI = api.NewMediaStore(a.media)
	}
	a.svc = api.NewService(pool, a.publisher, mediaAPI, api.Limits{
		MaxTextRunes: cfg.MaxTextRunes, SendRate: cfg.SendRate, SendBurst: cfg.SendBurst,
	}, logger.With("component", "api"))
	a.rest = api.NewREST(a.svc, a.verifier, logger.With("component", "http"))
	if a.media != nil {
		api.RegisterMedia(a.rest, a.svc, a.media, logger.With("component", "media"))
	}
	if err := a.openConnections(ctx); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

func (a *App) openBus(ctx context.Context, initQueues bool) error {
	switch a.cfg.Transport {
	case "aws":
		client, err := eventbridge.NewClient(ctx, a.cfg.awsAt(a.cfg.EventBridgeURL))
		if err != nil {
			return fmt.Errorf("EventBridge client: %w", err)
		}
		pub, err := eventbridge.NewPublisher(client, eventbridge.Options{BusName: a.cfg.EventBusName, Logger: a.logger.With("component", "bus")})
		if err != nil {
			return fmt.Errorf("CHAT_EVENT_BUS_NAME: %w", err)
		}
		a.publisher = pub
	default:
		a.waker = pgbus.NewWaker(a.cfg.DatabaseURL, a.logger.With("component", "bus"))
		a.bus = pgbus.New(a.pool, a.waker, a.logger.With("component", "bus"))
		if initQueues {
			if err := a.bus.Init(ctx); err != nil {
				return err
			}
		}
		a.publisher = a.bus
	}
	return nil
}

// openMedia serves S3 in-process for chat dev (objects under CHAT_DATA_DIR)
// or connects to the configured bucket.
func (a *App) openMedia(ctx context.Context) error {
	custom := a.cfg.S3Endpoint != ""
	cfg := media.Config{
		Bucket: a.cfg.S3Bucket, Endpoint: a.cfg.S3Endpoint, Region: a.cfg.S3Region, Keys: a.cfg.AWSKeys,
		// A custom endpoint is an S3-compatible server (gofakes3, MinIO, ...):
		// they commonly mishandle the SDK's default request checksums and
		// virtual-host addressing, which the Local settings turn off. Against
		// AWS itself (no endpoint) the defaults stay.
		PathStyle: custom, Local: custom,
		MaxImageBytes: int64(a.cfg.MaxImageBytes), MaxVideoBytes: int64(a.cfg.MaxVideoBytes), MaxAudioBytes: int64(a.cfg.MaxAudioBytes),
	}
	if a.cfg.EmbeddedS3 {
		srv, err := s3local.New(filepath.Join(a.cfg.DataDir, "s3"), a.logger.With("component", "s3"))
		if err != nil {
			return fmt.Errorf("embedded S3 under CHAT_DATA_DIR: %w", err)
		}
		if err := srv.EnsureBucket(ctx, a.cfg.S3Bucket); err != nil {
			return fmt.Errorf("embedded S3 bucket: %w", err)
		}
		ln, err := net.Listen("tcp", a.cfg.S3Addr)
		if err != nil {
			return fmt.Errorf("CHAT_S3_ADDR %s: %w", a.cfg.S3Addr, err)
		}
		a.s3, a.s3Ln = srv, ln
		cfg.Endpoint, cfg.PathStyle, cfg.Local = "http://"+ln.Addr().String(), true, true
	} else if a.cfg.S3Endpoint == "" && a.cfg.Transport != "aws" && a.cfg.S3Bucket == "parley-media" {
		// Outside dev with no bucket configured, media is off rather than
		// pointed at an AWS bucket nobody created.
		return nil
	}
	store, err := media.New(ctx, cfg, a.logger.With("component", "media"))
	if err != nil {
		return fmt.Errorf("media store (CHAT_S3_BUCKET/CHAT_S3_ENDPOINT): %w", err)
	}
	a.media = store
	return nil
}

func (a *App) openConnections(ctx context.Context) error {
	if a.cfg.ConnTable == "" {
		a.conns = pgstore.New(a.pool)
		return nil
	}
	client, err := dynamostore.NewClient(ctx, a.cfg.awsAt(a.cfg.DynamoEndpoint))
	if err != nil {
		return fmt.Errorf("CHAT_DYNAMODB_ENDPOINT: %w", err)
	}
	store := dynamostore.New(client, a.cfg.ConnTable)
	if a.cfg.DynamoEndpoint != "" {
		// A local DynamoDB starts empty; on AWS the stack owns the table.
		if err := store.CreateTable(ctx); err != nil {
			return fmt.Errorf("CHAT_CONNECTIONS_TABLE %s: %w", a.cfg.ConnTable, err)
		}
	}
	a.conns = store
	return nil
}

// Close releases what openApp acquired.
func (a *App) Close() {
	for _, ln := range []net.Listener{a.httpLn, a.adminLn, a.s3Ln} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// workerNames lists every worker, in start order.
var workerNames = []string{events.WorkerPersister, events.WorkerFanout, events.WorkerThumbnailer}

// workerHandler builds the handler of a named worker.
// workerDeps are what worker handlers write through.
type workerDeps struct {
	pool      *pgxpool.Pool
	publisher events.Publisher
	conns     connstore.Store
}

// sharedDeps lets worker handlers use the process's own pool: right for a
// process that runs one worker (a Lambda, `chat worker NAME`).
func (a *App) sharedDeps() workerDeps {
	return workerDeps{pool: a.pool, publisher: a.publisher, conns: a.conns}
}

// ownDeps gives the workers of a process that also serves requests a pool
// of their own, so a burst of requests cannot starve them of connections
// (and the other way round).
func (a *App) ownDeps(ctx context.Context, size int) (workerDeps, func(), error) {
	pc := a.pool.Config()
	pc.MaxConns = int32(size)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return workerDeps{}, nil, fmt.Errorf("worker pool: %w", err)
	}
	d := workerDeps{pool: pool, publisher: a.publisher, conns: a.conns}
	if a.bus != nil {
		d.publisher = pgbus.New(pool, a.waker, a.logger.With("component", "bus"))
	}
	if _, ok := a.conns.(*pgstore.Store); ok {
		d.conns = pgstore.New(pool)
	}
	return d, pool.Close, nil
}

func (a *App) workerHandler(ctx context.Context, name string, d workerDeps) (events.Handler, error) {
	logger := a.logger.With("worker", name)
	switch name {
	case events.WorkerPersister:
		return persister.New(d.pool, logger), nil
	case events.WorkerFanout:
		client, err := fanout.NewManagementClient(ctx, a.cfg.WSManagementURL, a.cfg.AWSKeys)
		if err != nil {
			return nil, fmt.Errorf("CHAT_WS_MANAGEMENT_ENDPOINT: %w", err)
		}
		var urls fanout.MediaURLs
		if a.media != nil {
			urls = a.media
		}
		return fanout.New(d.conns, client, d.publisher, urls, logger), nil
	case events.WorkerThumbnailer:
		if a.media == nil {
			return nil, errors.New("the thumbnailer needs a media store: set CHAT_S3_BUCKET (and CHAT_S3_ENDPOINT for a non-AWS S3)")
		}
		return thumbnailer.New(a.media, d.publisher, thumbnailer.Config{MaxSide: a.cfg.ThumbnailSide}, logger), nil
	}
	return nil, fmt.Errorf("unknown worker %q (known: persister, fanout, thumbnailer)", name)
}

// parts selects what one process runs.
type parts struct {
	api     bool // REST API (and the embedded S3, in dev)
	gateway bool // WebSocket endpoint at /ws and the management API
	workers []string
}

// listen binds the listeners early so callers (and tests) learn the
// addresses before serving starts.
func (a *App) listen(p parts) error {
	if p.api || p.gateway {
		ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("CHAT_HTTP_ADDR %s: %w", a.cfg.HTTPAddr, err)
		}
		a.httpLn = ln
	}
	if p.gateway {
		ln, err := net.Listen("tcp", a.cfg.GatewayAdmin)
		if err != nil {
			return fmt.Errorf("CHAT_GATEWAY_ADMIN_ADDR %s: %w", a.cfg.GatewayAdmin, err)
		}
		a.adminLn = ln
		if a.cfg.WSManagementURL == "http://"+a.cfg.GatewayAdmin {
			// The port may have been chosen by the system (":0").
			a.cfg.WSManagementURL = "http://" + ln.Addr().String()
		}
	}
	return nil
}

// run runs the selected parts until ctx ends, then shuts down gracefully:
// listeners stop accepting, WebSocket clients are told the server is going
// away, in-flight events finish or stay queued.
func (a *App) run(ctx context.Context, p parts) error {
	g, ctx := errgroup.WithContext(ctx)
	if a.waker != nil {
		g.Go(func() error { return a.waker.Run(ctx) })
	}
	if len(p.workers) > 0 && a.waker != nil {
		// Each consumer holds a connection for its whole batch while its
		// handler needs others: a pool of their own means handlers and
		// requests can never be starved by consumers.
		pc := a.pool.Config()
		pc.MaxConns = int32(len(p.workers)*a.cfg.WorkerConc + 2)
		cp, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return fmt.Errorf("consumer pool: %w", err)
		}
		defer cp.Close()
		a.consumerPool = cp
	}
	deps := a.sharedDeps()
	if len(p.workers) > 0 && (p.api || p.gateway) {
		d, closeFn, err := a.ownDeps(ctx, len(p.workers)*a.cfg.WorkerConc+4)
		if err != nil {
			return err
		}
		defer closeFn()
		deps = d
	}
	for _, name := range p.workers {
		h, err := a.workerHandler(ctx, name, deps)
		if err != nil {
			return err
		}
		g.Go(func() error { return a.consume(ctx, name, h) })
	}
	if sweeper, ok := a.conns.(*pgstore.Store); ok && (p.gateway || len(p.workers) > 0) {
		g.Go(func() error { return sweepConnections(ctx, sweeper, a.logger) })
	}
	if a.s3 != nil && p.api {
		g.Go(func() error { return a.s3.Serve(ctx, a.s3Ln) })
	}

	if a.cfg.PprofAddr != "" {
		ln, err := net.Listen("tcp", a.cfg.PprofAddr)
		if err != nil {
			return fmt.Errorf("CHAT_PPROF_ADDR %s: %w", a.cfg.PprofAddr, err)
		}
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		serve(ctx, g, ln, pm, a.cfg.ShutdownGrace, a.logger, nil)
	}

	mux := http.NewServeMux()
	var gw *gateway.Gateway
	if p.gateway {
		routes := api.NewWSRoutes(a.svc, a.verifier, a.conns, a.cfg.WSMaxAge+5*time.Minute, a.logger.With("component", "ws"))
		gw = gateway.New(gateway.Routes{Connect: routes.Connect, Disconnect: routes.Disconnect, Default: routes.Default}, gateway.Config{
			IdleTimeout: a.cfg.WSIdleTimeout, MaxConnectionAge: a.cfg.WSMaxAge, SendBuffer: a.cfg.WSSendBuffer,
		}, a.logger.With("component", "gateway"))
		mux.Handle("/ws", gw)
		serve(ctx, g, a.adminLn, gw.AdminHandler(), a.cfg.ShutdownGrace, a.logger, nil)
	}
	if p.api {
		mux.Handle("/", a.rest)
	} else if p.gateway {
		mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
			api.WriteJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
		})
	}
	if a.httpLn != nil {
		var before func(context.Context) error
		if gw != nil {
			before = gw.Shutdown // hijacked connections are not closed by http.Server.Shutdown
		}
		serve(ctx, g, a.httpLn, mux, a.cfg.ShutdownGrace, a.logger, before)
	}
	return g.Wait()
}

// consume runs one worker on the configured transport.
func (a *App) consume(ctx context.Context, name string, h events.Handler) error {
	var err error
	if a.cfg.Transport == "aws" {
		if a.cfg.QueueURL == "" {
			return fmt.Errorf("worker %s: CHAT_QUEUE_URL is required with CHAT_TRANSPORT=aws", name)
		}
		err = sqs.Run(ctx, sqs.Config{QueueURL: a.cfg.QueueURL, AWS: a.cfg.awsAt(a.cfg.SQSEndpoint), Concurrency: a.cfg.WorkerConc}, h, a.logger.With("worker", name))
	} else {
		cfg := pgbus.ConsumerConfig{Concurrency: a.cfg.WorkerConc, MaxAttempts: a.cfg.WorkerAttempts, FallbackPoll: a.cfg.FallbackPoll}
		if name == events.WorkerThumbnailer {
			cfg.HandlerTimeout = 2 * time.Minute // video poster frames
		}
		err = pgbus.Consume(ctx, a.consumerPool, a.waker, name, h, cfg, a.logger)
	}
	if err != nil {
		return fmt.Errorf("worker %s: %w", name, err)
	}
	return nil
}

func serve(ctx context.Context, g *errgroup.Group, ln net.Listener, h http.Handler, grace time.Duration, logger *slog.Logger, before func(context.Context) error) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		if before != nil {
			if err := before(sctx); err != nil {
				logger.Warn("shutdown", "err", err)
			}
		}
		return srv.Shutdown(sctx)
	})
}

// sweepConnections deletes expired connection records: the local stand-in
// for DynamoDB's TTL.
func sweepConnections(ctx context.Context, s *pgstore.Store, logger *slog.Logger) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if n, err := s.Sweep(ctx, now); err != nil {
				logger.Warn("sweep expired connections", "err", err)
			} else if n > 0 {
				logger.Info("swept expired connections", "count", n)
			}
		}
	}
}
