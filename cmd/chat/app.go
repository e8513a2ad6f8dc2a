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
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/dynamostore"
	"github.com/parleychat/parley/internal/connstore/pgstore"
	"github.com/parleychat/parley/internal/demo"
	"github.com/parleychat/parley/internal/gateway"
	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/metrics"
	"github.com/parleychat/parley/internal/push"
	"github.com/parleychat/parley/internal/retry"
	"github.com/parleychat/parley/internal/s3local"
	"github.com/parleychat/parley/internal/thumbnail"
	"github.com/parleychat/parley/internal/tracing"
	"github.com/parleychat/parley/workers/fanout"
	"github.com/parleychat/parley/workers/notifier"
	"github.com/parleychat/parley/workers/persister"
	"github.com/parleychat/parley/workers/thumbnailer"
)

// parts selects what one process runs and so what it opens.
type parts struct {
	api     bool     // REST API
	gateway bool     // local WebSocket gateway (/ws) and its management API
	s3      bool     // embedded S3 server
	workers []string // workers to consume for
	db      bool     // PostgreSQL: reads, connection records, the local bus
	bus     bool     // the event bus (publish, replay, dead letters)
	migrate bool     // create the database and apply migrations first
	// oneAddr serves REST and /ws on CHAT_HTTP_ADDR (chat dev); otherwise
	// the gateway has its own CHAT_GATEWAY_ADDR.
	oneAddr bool
	// lambda: one invocation at a time, so a small pool.
	lambda bool
	// demo serves the demo web client at / (chat dev only).
	demo bool
}

// App is the composition root: every long-running piece is built here and
// run under one errgroup, so the first failure or a signal stops them all.
type App struct {
	cfg    Config
	logger *slog.Logger
	budget connBudget

	pool      *pgxpool.Pool // requests and worker handlers
	consumers *pgxpool.Pool // local transport: one connection per consumer
	transport transport

	verifier *auth.Verifier
	// backlog refuses sends while the worker queues lag; nil when off (the
	// AWS transport, CHAT_OVERLOAD_QUEUE_AGE=0, processes taking no sends).
	backlog *pgbus.Backlog
	svc     *chat.Service
	rest    *api.REST
	conns   connstore.Store
	// index is conns with this process's gateway's connections kept in
	// memory; nil in a process without a gateway.
	index *connstore.Index
	// sweep deletes expired connection records; nil where the store
	// expires them itself (DynamoDB's TTL).
	sweep func(ctx context.Context, now time.Time) (int64, error)
	media *media.Store
	s3    *s3local.Server

	// metrics is this process's Prometheus metrics, on reg; metricsLn
	// serves them (and /status), nil when CHAT_METRICS_ADDR is off.
	reg       *prometheus.Registry
	metrics   *metrics.Metrics
	publisher events.Publisher // the transport's, timed by metrics and traced
	// tracing is nil when off (no OTLP endpoint): its wrappers then add
	// nothing.
	tracing *tracing.Tracing

	httpLn, gatewayLn, adminLn, s3Ln, metricsLn net.Listener
	// managementURL is where fanout posts: CHAT_WS_MANAGEMENT_ENDPOINT, or
	// this process's own management listener when it runs the gateway.
	managementURL string
	// gatewayID is the local gateway's identity, recorded with each of its
	// connections (see forgetPreviousRun).
	gatewayID string
	// sink records pushes in chat dev where no provider is configured.
	sink *push.Sink
}

// connBudget is the most PostgreSQL connections one process opens, by use.
// README.md's "PostgreSQL connections" section documents the same sums.
type connBudget struct {
	main      int // pool for requests and worker handlers
	consumers int // local transport: each consumer holds one for its batch
	dedicated int // local transport: the LISTEN and the NOTIFY connection
}

func (b connBudget) total() int { return b.main + b.consumers + b.dedicated }

// requestConns is the main pool's share for serving REST or WebSocket
// requests; each worker adds its consumers' handlers plus two for their
// publishes.
const requestConns = 8

func budgetFor(cfg Config, p parts) connBudget {
	var b connBudget
	if !p.db {
		return b
	}
	switch {
	case p.lambda:
		b.main = 2 // one invocation at a time
	default:
		if p.api || p.gateway {
			b.main += requestConns
		}
		for _, w := range p.workers {
			b.main += cfg.concurrency(w) + 2
		}
		b.main = max(b.main, 2) // one-shot commands
	}
	if cfg.DBMaxConns > 0 {
		b.main = cfg.DBMaxConns
	}
	if cfg.Transport == transportPostgres && p.bus {
		for _, w := range p.workers {
			b.consumers += cfg.concurrency(w)
		}
		b.dedicated = 2
	}
	return b
}

// openApp builds what p needs: PostgreSQL pools, the transport, auth, media,
// the chat service and the connection store.
func openApp(ctx context.Context, cfg Config, logger *slog.Logger, p parts) (*App, error) {
	a := &App{cfg: cfg, logger: logger, budget: budgetFor(cfg, p), managementURL: cfg.WSManagementURL}
	a.reg = metrics.NewRegistry()
	a.metrics = metrics.New(a.reg)
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	var err error
	tc := cfg.Tracing
	tc.Lambda = p.lambda
	if a.tracing, err = tracing.New(ctx, tc); err != nil {
		return nil, err
	}
	if p.db {
		if err := a.openDB(ctx, p.migrate, p.workers); err != nil {
			return nil, err
		}
	}
	if p.bus {
		if err := a.openTransport(ctx, p); err != nil {
			return nil, err
		}
		a.publisher = a.tracing.Publisher(a.metrics.Publisher(a.transport.Publisher()))
	}
	if cfg.verifiesTokens() { // workers verify no tokens
		var err error
		if a.verifier, err = cfg.verifier(ctx, logger); err != nil {
			return nil, err
		}
	}
	if err := a.openMedia(ctx, p); err != nil {
		return nil, err
	}
	if p.db {
		if err := a.openConnections(ctx); err != nil {
			return nil, err
		}
	}
	if p.db && p.bus {
		var store chat.MediaStore
		if a.media != nil { // a nil *media.Store in the interface would not be nil
			store = a.media
		}
		limits := chat.DefaultLimits()
		limits.MaxTextRunes, limits.Rates = cfg.MaxTextRunes, cfg.Rates
		limits.MaxUploads, limits.MaxUserUploads = cfg.MaxUploads, cfg.MaxUserUploads
		limits.MaxConnectionsPerUser = cfg.WSMaxPerUser
		limits.EditWindow, limits.UnsendWindow = cfg.EditWindow, cfg.UnsendWindow
		limits.MaxGroupMembers = cfg.MaxGroupMembers
		opts := []chat.Option{chat.WithPresence(a.conns)}
		if (p.api || p.gateway) && a.cfg.Transport == transportPostgres && a.cfg.OverloadQueueAge > 0 {
			a.backlog = pgbus.NewBacklog(a.pool, a.cfg.OverloadQueueAge, a.cfg.OverloadSample, logger.With("component", "backlog"))
			opts = append(opts, chat.WithAdmission(a.backlog))
		}
		a.svc = chat.NewService(a.pool, a.publisher, store, limits, logger.With("component", "chat"), opts...)
		a.rest = api.NewREST(a.svc, a.verifier, logger.With("component", "http"), api.WithUploadTimeout(cfg.HTTPUploadTimeout))
	}
	ok = true
	return a, nil
}

// openDB connects the main pool, creating the database and migrating it
// first if asked, and the consumers' pool for workers.
func (a *App) openDB(ctx context.Context, migrate bool, workers []string) error {
	pcfg, err := pgxpool.ParseConfig(a.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if a.cfg.DBHost != "" {
		if err := pointAt(pcfg.ConnConfig, a.cfg.DBHost); err != nil {
			return fmt.Errorf("CHAT_DB_HOST: %w", err)
		}
	}
	if strings.Contains(a.cfg.DatabaseURL, "pool_max_conns") {
		a.budget.main = int(pcfg.MaxConns) // the URL's size wins; logged as such
	} else {
		pcfg.MaxConns = int32(a.budget.main)
	}
	// A process started while PostgreSQL restarts (or before it, on a
	// booting machine) waits for it rather than exiting at once; with
	// migrate, creating the database is the first thing that waits.
	wait, cancel := context.WithTimeout(ctx, a.cfg.DBConnectTimeout)
	defer cancel()
	policy := retry.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}
	waitFor := func(step func(context.Context) error) error {
		if _, err := policy.Do(wait, step, nil, func(attempt int, err error, d time.Duration) {
			a.logger.Warn("waiting for PostgreSQL", "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
		}); err != nil {
			return fmt.Errorf("connect to PostgreSQL at %s (waited up to CHAT_DB_CONNECT_TIMEOUT=%s): %w", redact(a.cfg.DatabaseURL), a.cfg.DBConnectTimeout, err)
		}
		return nil
	}
	if migrate {
		var created bool
		if err := waitFor(func(ctx context.Context) (err error) {
			created, err = db.EnsureDatabase(ctx, a.cfg.DatabaseURL)
			return err
		}); err != nil {
			return err
		}
		if created {
			a.logger.Info("created database", "url", redact(a.cfg.DatabaseURL))
		}
	}
	if a.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := waitFor(a.pool.Ping); err != nil {
		return err
	}
	if migrate {
		applied, err := db.Migrate(ctx, a.pool)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			a.logger.Info("applied migrations", "versions", applied)
		}
	}
	if a.budget.consumers > 0 {
		cc := pcfg.Copy()
		cc.MaxConns = int32(a.budget.consumers)
		// Names the consumers for chat status (pgbus.Bus.Status).
		cc.ConnConfig.RuntimeParams["application_name"] = pgbus.ConsumerAppName(workers)
		// A consumer's statements take batches of 1 to CHAT_WORKER_BATCH_SIZE
		// events against tables that grow from empty. A generic plan, which
		// the server settles on after five executions, is costed for an
		// unknown batch on the tables as they were then (a sequential scan
		// of a few pages) and kept until their next ANALYZE; planning each
		// execution for its batch costs far less than such a scan of a grown
		// table.
		cc.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
		if a.consumers, err = pgxpool.NewWithConfig(ctx, cc); err != nil {
			return fmt.Errorf("consumer pool: %w", err)
		}
	}
	return nil
}

func (a *App) openTransport(ctx context.Context, p parts) error {
	logger := a.logger.With("component", "bus")
	switch a.cfg.Transport {
	case transportAWS:
		client, err := eventbridge.NewClient(ctx, a.cfg.awsAt(a.cfg.EventBridgeURL))
		if err != nil {
			return fmt.Errorf("EventBridge client: %w", err)
		}
		pub, err := eventbridge.NewPublisher(client, eventbridge.Options{BusName: a.cfg.EventBusName, Logger: logger})
		if err != nil {
			return fmt.Errorf("CHAT_EVENT_BUS_NAME: %w", err)
		}
		a.transport = &awsTransport{cfg: a.cfg, client: client, publisher: pub, logger: a.logger}
	default:
		if a.pool == nil {
			return errors.New("the local transport needs PostgreSQL")
		}
		waker := pgbus.NewWaker(a.cfg.DatabaseURL, logger)
		bus := pgbus.New(a.pool, waker, logger, pgbus.WithGroupSizes(a.metrics.GroupSize))
		if p.migrate {
			if err := bus.Init(ctx); err != nil {
				return err
			}
		}
		a.transport = &pgTransport{cfg: a.cfg, bus: bus, waker: waker, consumers: a.consumers, logger: a.logger,
			consume: pgbus.ConsumerConfig{MaxAttempts: a.cfg.WorkerAttempts, BatchSize: a.cfg.WorkerBatch, FallbackPoll: a.cfg.FallbackPoll}}
	}
	return nil
}

// openMedia serves S3 in-process (objects under CHAT_DATA_DIR) when p asks
// for it, and connects to the bucket when media is configured. Without
// media, uploads answer a 503 that says how to configure it.
func (a *App) openMedia(ctx context.Context, p parts) error {
	cfg := media.Config{
		Bucket: a.cfg.S3Bucket, Endpoint: a.cfg.S3Endpoint, Region: a.cfg.S3Region, Keys: a.cfg.AWSKeys,
		// A custom endpoint is an S3-compatible server (gofakes3, MinIO, ...):
		// they commonly mishandle the SDK's default request checksums and
		// virtual-host addressing, which the Local settings turn off. Against
		// AWS itself (no endpoint) the defaults stay.
		PathStyle: a.cfg.S3Endpoint != "", Local: a.cfg.S3Endpoint != "",
		MaxImageBytes: int64(a.cfg.MaxImageBytes), MaxVideoBytes: int64(a.cfg.MaxVideoBytes), MaxAudioBytes: int64(a.cfg.MaxAudioBytes),
		Images: a.cfg.imageLimits(),
	}
	if p.s3 {
		srv, err := s3local.New(filepath.Join(a.cfg.DataDir, "s3"),
			s3local.Config{Keys: a.cfg.AWSKeys, AllowedOrigins: a.cfg.S3CORSOrigins}, a.logger.With("component", "s3"))
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
		// Presigned uploads stream here: they get the upload's deadline.
		srv.ReadTimeout, srv.IdleTimeout = a.cfg.HTTPUploadTimeout, a.cfg.HTTPIdleTimeout
		a.s3, a.s3Ln = srv, ln
		cfg.Endpoint, cfg.PathStyle, cfg.Local = "http://"+ln.Addr().String(), true, true
	} else if !a.cfg.MediaConfigured {
		return nil
	}
	if !p.api && !p.gateway && !p.lambda && len(p.workers) == 0 {
		return nil // nothing here reads or writes media
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
		store := pgstore.New(a.pool)
		a.conns, a.sweep = store, store.Sweep
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
	if a.tracing != nil {
		// What is left goes out, within a bound: a collector that is down
		// must not hold up a shutdown.
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdown)
		if err := a.tracing.Shutdown(ctx); err != nil {
			a.logger.Warn("spans not exported at shutdown", "err", err)
		}
		cancel()
	}
	for _, ln := range []net.Listener{a.httpLn, a.gatewayLn, a.adminLn, a.s3Ln, a.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	for _, p := range []*pgxpool.Pool{a.consumers, a.pool} {
		if p != nil {
			p.Close()
		}
	}
}

// workerHandler builds the handler of a named worker. gw is this process's
// own gateway, if it runs one: fanout then posts to it in-process, unless
// CHAT_WS_MANAGEMENT_ENDPOINT names another.
func (a *App) workerHandler(ctx context.Context, name string, gw *gateway.Gateway) (events.Handler, error) {
	logger := a.logger.With("worker", name)
	publisher := a.publisher
	switch name {
	case events.WorkerPersister:
		// With the connection store in this database, only the feed
		// entries of users in feed mode are announced.
		return persister.New(a.pool, logger, persister.WithPendingReadRetention(a.cfg.PendingReadRetention),
			persister.WithFeedAnnouncements(publisher, a.cfg.ConnTable == "")), nil
	case events.WorkerFanout:
		var poster fanout.Poster = gw
		var conns fanout.Connections = a.conns
		if gw == nil || a.cfg.WSManagementURLSet {
			client, err := fanout.NewManagementClient(ctx, a.managementURL, a.cfg.AWSKeys, a.cfg.GatewaySecret)
			if err != nil {
				return nil, fmt.Errorf("CHAT_WS_MANAGEMENT_ENDPOINT, CHAT_GATEWAY_ADMIN_SECRET: %w", err)
			}
			poster = client
		} else if a.index != nil {
			// Posting to this process's gateway reaches its connections
			// only, and those are known here without a query.
			conns = a.index.Held()
		}
		var urls fanout.MediaURLs
		if a.media != nil {
			urls = a.media
		}
		// Whether a user is still online is asked of the store (every
		// gateway's connections), not of this gateway's.
		return fanout.New(conns, a.metrics.Poster(a.tracing.Poster(poster)), publisher, urls, logger, fanout.WithExpiredFrame(api.TokenExpiredFrame()),
			fanout.WithPresence(db.New(a.pool), a.cfg.PresenceGrace, a.conns), fanout.WithFeed(db.New(a.pool))), nil
	case events.WorkerNotifier:
		router, expo, err := a.pushProviders(logger)
		if err != nil {
			return nil, err
		}
		var receipts notifier.Receipts
		if expo != nil {
			receipts = expo
		}
		return notifier.New(a.pool, router, receipts, a.cfg.Push, logger), nil
	case events.WorkerThumbnailer:
		if a.media == nil {
			return nil, errors.New("the thumbnailer needs a media store: set CHAT_S3_BUCKET (and CHAT_S3_ENDPOINT for a non-AWS S3)")
		}
		limits := a.cfg.imageLimits()
		limits.Memory = thumbnail.NewBudget(a.cfg.ThumbnailMemory)
		return thumbnailer.New(a.media, publisher, thumbnailer.Config{MaxSide: a.cfg.ThumbnailSide, Limits: limits, Messages: db.New(a.pool)}, logger), nil
	}
	return nil, unknownWorker(name)
}

// pushProviders builds the notifier's provider of each platform. In chat
// dev a platform whose endpoint variable is unset goes to the development
// sink; elsewhere Expo is always on (it needs no credentials) and APNs and
// FCM are on when their credentials are given.
func (a *App) pushProviders(logger *slog.Logger) (push.Router, *push.Expo, error) {
	cfg := a.cfg
	router := push.Router{}
	sink := func(platform string) {
		if a.sink == nil {
			a.sink = push.NewSink(logger.With("component", "push-sink"))
		}
		router[platform] = a.metrics.Pusher("sink", a.sink)
	}
	var expo *push.Expo
	if cfg.DevMode && !cfg.ExpoPushURLSet {
		sink(push.PlatformExpo)
	} else {
		var err error
		if expo, err = push.NewExpo(cfg.ExpoPushURL, cfg.ExpoAccessToken, nil); err != nil {
			return nil, nil, fmt.Errorf("CHAT_EXPO_PUSH_URL: %w", err)
		}
		router[push.PlatformExpo] = a.metrics.Pusher("expo", expo)
	}
	switch {
	case cfg.DevMode && !cfg.APNsSet:
		sink(push.PlatformIOS)
	case cfg.APNs.KeyPEM != nil:
		apns, err := push.NewAPNs(cfg.APNs, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("CHAT_APNS_KEY: %w", err)
		}
		router[push.PlatformIOS] = a.metrics.Pusher("apns", apns)
	default:
		logger.Warn("notifier: no APNs key (CHAT_APNS_KEY): ios devices get no pushes")
	}
	switch {
	case cfg.DevMode && !cfg.FCMSet:
		sink(push.PlatformAndroid)
	case cfg.FCMCredentials != nil:
		fcm, err := push.NewFCM(cfg.FCMURL, cfg.FCMCredentials, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("CHAT_FCM_CREDENTIALS: %w", err)
		}
		router[push.PlatformAndroid] = a.metrics.Pusher("fcm", fcm)
	default:
		logger.Warn("notifier: no FCM credentials (CHAT_FCM_CREDENTIALS): android devices get no pushes")
	}
	return router, expo, nil
}

// recentPushes lists what the development sink recorded, to loopback
// clients only: the pushes carry message previews.
func (a *App) recentPushes(w http.ResponseWriter, req *http.Request) {
	host, _, _ := net.SplitHostPort(req.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		api.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "recent pushes are listed to loopback clients only"})
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"data": a.sink.Recent()})
}

func unknownWorker(name string) error {
	return fmt.Errorf("unknown worker %q (known: %s)", name, strings.Join(events.Workers(), ", "))
}

// listen binds the listeners early so callers (and tests) learn the
// addresses before serving starts.
func (a *App) listen(p parts) error {
	bind := func(dst *net.Listener, name, addr string) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", name, addr, err)
		}
		*dst = ln
		return nil
	}
	if a.cfg.MetricsAddr != "" {
		if err := bind(&a.metricsLn, "CHAT_METRICS_ADDR", a.cfg.MetricsAddr); err != nil {
			if a.cfg.MetricsAddrSet {
				return err
			}
			// The default is one address for every process of a machine:
			// the first to start serves it, the others run without.
			a.logger.Warn("no metrics listener: the default address is taken; set CHAT_METRICS_ADDR for this process", "err", err)
		}
	}
	if p.api || (p.gateway && p.oneAddr) {
		if err := bind(&a.httpLn, "CHAT_HTTP_ADDR", a.cfg.HTTPAddr); err != nil {
			return err
		}
	}
	if p.gateway {
		if !p.oneAddr {
			if err := bind(&a.gatewayLn, "CHAT_GATEWAY_ADDR", a.cfg.GatewayAddr); err != nil {
				return err
			}
		}
		if err := bind(&a.adminLn, "CHAT_GATEWAY_ADMIN_ADDR", a.cfg.GatewayAdmin); err != nil {
			return err
		}
		if !a.cfg.WSManagementURLSet {
			// Our own listener, whose port the system may have chosen (":0").
			a.managementURL = "http://" + a.adminLn.Addr().String()
		}
		// By default the gateway is its own management URL: stable across
		// restarts on a fixed address, and distinct between gateways
		// sharing a database, since no two can listen there at once.
		a.gatewayID = a.cfg.GatewayID
		if a.gatewayID == "" {
			a.gatewayID = "http://" + a.adminLn.Addr().String()
		}
	}
	return nil
}

// run runs the selected parts until ctx ends, then shuts down gracefully:
// listeners stop accepting, WebSocket clients are told the server is going
// away, in-flight events finish or stay queued.
func (a *App) run(ctx context.Context, p parts) error {
	// Everything that can refuse to start does so before anything runs.
	if p.gateway && a.cfg.GatewaySecret == "" {
		return errors.New("CHAT_GATEWAY_ADMIN_SECRET is required: the shared secret of the gateway's management API, also given to fanout")
	}
	var gw *gateway.Gateway
	var routes *api.WSRoutes
	if p.gateway {
		// Every record of this gateway's connections is written by its
		// route handlers here, through the index, so a fanout posting to
		// it in-process looks up connections in memory (see workerHandler).
		a.index = connstore.NewIndex(a.conns, a.gatewayID)
		a.conns = a.index
		routes = a.wsRoutes(a.logger.With("component", "ws"))
		gw = gateway.New(a.tracedRoutes(routes), gateway.Config{
			APIID: a.gatewayID, AdminSecret: a.cfg.GatewaySecret, ExpiredFrame: api.TokenExpiredFrame(),
			IdleTimeout: a.cfg.WSIdleTimeout, MaxConnectionAge: a.cfg.WSMaxAge, SendBuffer: a.cfg.WSSendBuffer,
		}, a.logger.With("component", "gateway"))
		a.metrics.Gateway(gw)
	}
	handlers := make([]events.Handler, len(p.workers))
	for i, name := range p.workers {
		h, err := a.workerHandler(ctx, name, gw)
		if err != nil {
			return err
		}
		handlers[i] = a.metrics.Worker(name, a.tracing.Worker(name, h, a.logger.With("worker", name)))
	}
	if a.transport != nil && a.cfg.Transport == transportPostgres {
		// On AWS the queues' numbers are SQS's own CloudWatch metrics.
		a.metrics.Queues(a.transport.Status)
	}
	if p.gateway {
		if err := a.forgetPreviousRun(ctx, routes); err != nil {
			return err
		}
	}
	var pprofLn net.Listener
	if a.cfg.PprofAddr != "" {
		ln, err := net.Listen("tcp", a.cfg.PprofAddr)
		if err != nil {
			return fmt.Errorf("CHAT_PPROF_ADDR %s: %w", a.cfg.PprofAddr, err)
		}
		pprofLn = ln
	}

	g, ctx := errgroup.WithContext(ctx)
	if a.transport != nil {
		g.Go(func() error { return a.transport.Run(ctx) })
	}
	if gw != nil {
		a.serve(ctx, g, a.adminLn, gw.AdminHandler(), nil)
	}
	for i, name := range p.workers {
		h := handlers[i]
		g.Go(func() error {
			if err := a.transport.Consume(ctx, name, h); err != nil {
				return fmt.Errorf("worker %s: %w", name, err)
			}
			return nil
		})
	}
	if a.backlog != nil {
		g.Go(func() error { return a.backlog.Run(ctx) })
	}
	if a.sweep != nil && (p.gateway || len(p.workers) > 0) {
		g.Go(func() error { return sweepConnections(ctx, a.sweep, a.logger) })
	}
	// The persister's process prunes the archive: one pruner per
	// deployment, on the transport whose archive is a table.
	if a.cfg.ArchiveRetention > 0 && a.cfg.Transport == transportPostgres && slices.Contains(p.workers, events.WorkerPersister) {
		g.Go(func() error {
			return a.prunePeriodically(ctx, "archive", "event archive", a.cfg.ArchivePruneEvery, a.cfg.ArchiveRetention, a.transport.PruneArchive)
		})
	}
	// And the sync feed, which is PostgreSQL's on either transport.
	if a.cfg.SyncRetention > 0 && slices.Contains(p.workers, events.WorkerPersister) {
		g.Go(func() error {
			return a.prunePeriodically(ctx, "sync", "sync feed", a.cfg.SyncPruneEvery, a.cfg.SyncRetention,
				func(ctx context.Context, before time.Time) (int64, error) {
					return persister.PruneFeed(ctx, a.pool, before, a.cfg.SyncPruneBatch)
				})
		})
	}
	if a.s3 != nil {
		g.Go(func() error { return a.s3.Serve(ctx, a.s3Ln) })
	}
	if pprofLn != nil {
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		a.serve(ctx, g, pprofLn, pm, nil)
	}

	if a.metricsLn != nil {
		a.serve(ctx, g, a.metricsLn, a.adminMux(), nil)
	}

	if a.httpLn != nil {
		mux := http.NewServeMux()
		if gw != nil {
			mux.Handle("/ws", gw)
		}
		if p.demo {
			a.demoClient().Register(mux)
		}
		if a.sink != nil {
			mux.HandleFunc("GET /dev/pushes", a.recentPushes)
		}
		mux.Handle("/", a.metrics.HTTP(a.tracing.HTTP(a.rest)))
		a.serve(ctx, g, a.httpLn, mux, gatewayShutdown(gw))
	}
	if a.gatewayLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/ws", gw)
		mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
			api.WriteJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
		})
		a.serve(ctx, g, a.gatewayLn, mux, gatewayShutdown(gw))
	}
	return g.Wait()
}

// demoTokenTTL is how long a token from the demo's token endpoint lasts, as
// long as one from `chat token`.
const demoTokenTTL = 24 * time.Hour

// demoClient is the demo web client; it mints tokens only with the
// published development secret (see demo.New).
func (a *App) demoClient() *demo.Handler {
	var issue demo.Issuer
	if a.cfg.DevSecretInUse {
		secret := []byte(a.cfg.JWTSecret)
		issue = func(user int64) (string, error) { return auth.Issue(secret, user, demoTokenTTL, time.Now()) }
	}
	return demo.New(issue)
}

// adminMux is the metrics listener's: GET /metrics (Prometheus) and
// GET /status (the workers' queues as JSON, as chat status prints them;
// 503 with the reason when they cannot be read).
func (a *App) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(a.reg))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if a.transport == nil {
			api.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "this process runs no event bus"})
			return
		}
		qs, err := a.transport.Status(r.Context())
		if err != nil {
			api.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		api.WriteJSON(w, http.StatusOK, statusBody(qs))
	})
	return mux
}

// forgetPreviousRun deletes the connection records a previous run of this
// gateway left behind when it stopped without running $disconnect (a
// crash, SIGKILL): their connections died with that process, and every
// post to them would only answer 410. It runs before the gateway serves, so
// no connection of this run is touched.
func (a *App) forgetPreviousRun(ctx context.Context, routes *api.WSRoutes) error {
	n, err := routes.ForgetGateway(ctx, a.gatewayID)
	if err != nil {
		return fmt.Errorf("forget the connections of gateway %s's previous run: %w", a.gatewayID, err)
	}
	if n > 0 {
		a.logger.Info("forgot the connections of the gateway's previous run; their users are announced offline", "gateway_id", a.gatewayID, "count", n)
	}
	return nil
}

// wsRoutes are the WebSocket route handlers, for the local gateway and for
// API Gateway's Lambdas. A connection record outlives API Gateway's maximum
// connection age a little, so a connection never loses its record early.
// tracedRoutes are routes' handlers, each call traced (when tracing is on).
func (a *App) tracedRoutes(routes *api.WSRoutes) gateway.Routes {
	return gateway.Routes{
		Connect:    tracing.WSRoute(a.tracing, routes.Connect),
		Disconnect: tracing.WSRoute(a.tracing, routes.Disconnect),
		Default:    tracing.WSRoute(a.tracing, routes.Default),
	}
}

// tracingShutdown bounds the export of the last spans when a process stops.
const tracingShutdown = 5 * time.Second

func (a *App) wsRoutes(logger *slog.Logger) *api.WSRoutes {
	return api.NewWSRoutes(a.svc, a.verifier, a.conns, a.cfg.WSMaxAge+5*time.Minute, logger)
}

// gatewayShutdown closes the WebSocket connections, which http.Server's
// Shutdown does not (they are hijacked).
func gatewayShutdown(gw *gateway.Gateway) func(context.Context) error {
	if gw == nil {
		return nil
	}
	return gw.Shutdown
}

func (a *App) serve(ctx context.Context, g *errgroup.Group, ln net.Listener, h http.Handler, before func(context.Context) error) {
	// ReadTimeout bounds a request's headers and body (POST /upload extends
	// it for its body); a WebSocket upgrade clears it once hijacked.
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, a.cfg.HTTPReadTimeout),
		ReadTimeout:       a.cfg.HTTPReadTimeout,
		IdleTimeout:       a.cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownGrace)
		defer cancel()
		if before != nil {
			if err := before(sctx); err != nil {
				a.logger.Warn("shutdown", "err", err)
			}
		}
		return srv.Shutdown(sctx)
	})
}

// prunePeriodically deletes with prune what is older than retention, at
// start and then every interval (the archive's, the sync feed's). A failure
// is logged and tried again at the next interval: keeping a little too
// much for a while harms nobody.
func (a *App) prunePeriodically(ctx context.Context, component, what string, every, retention time.Duration, prune func(context.Context, time.Time) (int64, error)) error {
	logger := a.logger.With("component", component)
	t := time.NewTicker(every)
	defer t.Stop()
	for now := time.Now(); ; {
		before := now.Add(-retention)
		if n, err := prune(ctx, before); err != nil && ctx.Err() == nil {
			logger.Warn("prune the "+what, "err", err)
		} else if n > 0 {
			logger.Info("pruned the "+what, "count", n, "before", before.UTC().Format(time.RFC3339))
		}
		select {
		case <-ctx.Done():
			return nil
		case now = <-t.C:
		}
	}
}

// sweepConnections deletes expired connection records: the local stand-in
// for DynamoDB's TTL.
func sweepConnections(ctx context.Context, sweep func(context.Context, time.Time) (int64, error), logger *slog.Logger) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if n, err := sweep(ctx, now); err != nil {
				logger.Warn("sweep expired connections", "err", err)
			} else if n > 0 {
				logger.Info("swept expired connections", "count", n)
			}
		}
	}
}
