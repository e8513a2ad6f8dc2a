package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/push"
	"github.com/parleychat/parley/internal/thumbnail"
	"github.com/parleychat/parley/internal/tracing"
	"github.com/parleychat/parley/workers/notifier"
	"github.com/parleychat/parley/workers/persister"
)

// devJWTSecret is used only by `chat dev`, which says so at start-up.
const devJWTSecret = "parley-development-secret-do-not-use-in-production"

// Overload defaults: a keeping-up pipeline's oldest event is a few
// milliseconds old, but a disk flush stalled behind the kernel's writeback
// holds it for 100-400 ms now and then; 400 ms is past those and still
// refuses well before accepted messages wait long (measured: at twice the
// capacity, accepted p99 58-160 ms in three runs). Sampling every 100 ms costs ten small
// queries a second per process.
const (
	defaultOverloadQueueAge = 400 * time.Millisecond
	defaultOverloadSample   = 100 * time.Millisecond
)

// defaultPresenceGrace outlasts a mobile connection's usual drop and
// reconnect (a network handover, a screen lock, an app switch) while still
// telling partners soon after a user really left.
const defaultPresenceGrace = 15 * time.Second

// defaultArchiveRetention keeps a week of events: enough to restore a
// backup a day or more old and replay what happened since.
const defaultArchiveRetention = 7 * 24 * time.Hour

// defaultSyncRetention keeps a month of each user's changes: a phone
// offline for longer reloads its conversations.
const defaultSyncRetention = 30 * 24 * time.Hour

// maxWorkerBatch bounds CHAT_WORKER_BATCH_SIZE: a batch is one transaction
// whose statements carry every event's fields, so past this a batch only
// holds its locks longer.
const maxWorkerBatch = 1000

// Transports (CHAT_TRANSPORT).
const (
	transportPostgres = "postgres"
	transportAWS      = "aws"
)

// Config is every setting, read from the environment once at start-up.
// Each field names its variable; README.md documents them.
type Config struct {
	Transport    string // CHAT_TRANSPORT: postgres (default) or aws
	HTTPAddr     string // CHAT_HTTP_ADDR: REST (and /ws in chat dev), default 127.0.0.1:8080
	GatewayAddr  string // CHAT_GATEWAY_ADDR: /ws of chat gateway, default 127.0.0.1:8082
	GatewayAdmin string // CHAT_GATEWAY_ADMIN_ADDR, default 127.0.0.1:8081
	DatabaseURL  string // DATABASE_URL
	DBMaxConns   int    // CHAT_DB_MAX_CONNS: main pool size; 0 = sized by what the process runs
	// DBHost replaces DATABASE_URL's host (and port, if given): the stack
	// points functions at its RDS Proxy while the secret names the instance
	// (CHAT_DB_HOST, default: none).
	DBHost string
	// DBConnectTimeout: how long a starting process waits for PostgreSQL
	// (CHAT_DB_CONNECT_TIMEOUT, default 30s).
	DBConnectTimeout time.Duration
	JWTSecret        string    // JWT_SECRET
	JWT              jwtConfig // the rest of token verification (authconfig.go)
	// Tracing: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP); default none, tracing off.
	Tracing        tracing.Config
	DataDir        string     // CHAT_DATA_DIR, default ./.chat-data
	LogLevel       slog.Level // CHAT_LOG_LEVEL: debug, info (default), warn, error
	LogFormat      string     // CHAT_LOG_FORMAT: text (default) or json
	MaxTextRunes   int        // CHAT_MAX_TEXT_CHARS, default 4000
	Rates          chat.Rates // CHAT_RATE_<KIND> per user: N/PERIOD[,BURST], 0 = no limit (chat.DefaultRates)
	WorkerAttempts int        // CHAT_WORKER_MAX_ATTEMPTS before dead-lettering, default 5
	// PendingReadRetention (CHAT_PENDING_READ_RETENTION, default 24h): how
	// long a read of a message not stored yet waits for it.
	PendingReadRetention time.Duration
	// EditWindow (CHAT_EDIT_WINDOW, default 15m) and UnsendWindow
	// (CHAT_UNSEND_WINDOW, default 1h): how long after sending a message
	// its sender may edit it, or unsend it.
	EditWindow, UnsendWindow time.Duration
	MaxGroupMembers          int           // CHAT_GROUP_MAX_MEMBERS, default 256: a group's members, its owner included
	WorkerConc               int           // CHAT_WORKER_CONCURRENCY consumers per worker queue, default 1
	WorkerBatch              int           // CHAT_WORKER_BATCH_SIZE most events a consumer claims at once, default 250 (1 to maxWorkerBatch)
	ThumbConc                int           // CHAT_THUMBNAILER_CONCURRENCY consumers of the thumbnailer, default 2
	FallbackPoll             time.Duration // CHAT_BUS_FALLBACK_POLL, default 1s
	// OverloadQueueAge: refuse sends while the oldest event waiting for the
	// persister or fanout is older (CHAT_OVERLOAD_QUEUE_AGE, default 400ms;
	// 0 = never refuse). Local transport only.
	OverloadQueueAge time.Duration
	OverloadSample   time.Duration // CHAT_OVERLOAD_SAMPLE_INTERVAL, default 100ms
	ShutdownGrace    time.Duration // CHAT_SHUTDOWN_TIMEOUT, default 15s
	// HTTP servers (REST, the gateway's /ws and management API, pprof).
	HTTPReadTimeout   time.Duration // CHAT_HTTP_READ_TIMEOUT: a request's headers and body, default 30s
	HTTPIdleTimeout   time.Duration // CHAT_HTTP_IDLE_TIMEOUT: a kept-alive connection between requests, default 2m
	HTTPUploadTimeout time.Duration // CHAT_HTTP_UPLOAD_TIMEOUT: the body of POST /upload instead, default 10m
	// ArchiveRetention: archived events older than this are pruned
	// (CHAT_ARCHIVE_RETENTION, default 7 days; 0 = keep them forever), by
	// the persister's process every ArchivePruneEvery
	// (CHAT_ARCHIVE_PRUNE_INTERVAL, default 1h) in batches of
	// ArchivePruneBatch rows (CHAT_ARCHIVE_PRUNE_BATCH, default 1000).
	ArchiveRetention  time.Duration
	ArchivePruneEvery time.Duration
	ArchivePruneBatch int
	// SyncRetention: sync feed entries older than this are pruned
	// (CHAT_SYNC_RETENTION, default 30 days; 0 = keep them forever), by
	// the persister's process every SyncPruneEvery
	// (CHAT_SYNC_PRUNE_INTERVAL, default 1h) in batches of SyncPruneBatch
	// rows (CHAT_SYNC_PRUNE_BATCH, default 1000). A client whose position
	// is older is told to reload.
	SyncRetention  time.Duration
	SyncPruneEvery time.Duration
	SyncPruneBatch int
	PprofAddr      string // CHAT_PPROF_ADDR: serve net/http/pprof there (loopback only); empty = off
	// MetricsAddr: CHAT_METRICS_ADDR, the admin listener of /metrics and
	// /status, default 127.0.0.1:9464; "off" = none. Loopback only
	// unless CHAT_METRICS_PUBLIC=true. MetricsAddrSet: given explicitly, so
	// a busy address is an error rather than a warning.
	MetricsAddr    string
	MetricsAddrSet bool

	// WebSocket gateway (local) and fanout.
	WSIdleTimeout time.Duration // CHAT_WS_IDLE_TIMEOUT, default 10m (API Gateway's)
	WSMaxAge      time.Duration // CHAT_WS_MAX_CONNECTION_AGE, default 2h (API Gateway's)
	WSSendBuffer  int           // CHAT_WS_SEND_BUFFER queued frames per connection, default 256
	WSMaxPerUser  int           // CHAT_WS_MAX_CONNECTIONS_PER_USER, default 10; 0 = no limit
	// PresenceGrace: how long fanout holds a user's going offline before
	// announcing it (CHAT_PRESENCE_GRACE, default 15s; 0 = at once).
	PresenceGrace   time.Duration
	WSManagementURL string // CHAT_WS_MANAGEMENT_ENDPOINT, default http://CHAT_GATEWAY_ADMIN_ADDR
	// WSManagementURLSet: CHAT_WS_MANAGEMENT_ENDPOINT was given, so a process
	// running the gateway does not point fanout at its own listener.
	WSManagementURLSet bool
	GatewayID          string // CHAT_GATEWAY_ID: the local gateway's identity; empty = its management URL
	// GatewaySecret guards the local gateway's management API
	// (CHAT_GATEWAY_ADMIN_SECRET): required by chat gateway and by a fanout
	// posting to it; chat dev makes one up when unset.
	GatewaySecret  string
	ConnTable      string // CHAT_CONNECTIONS_TABLE: DynamoDB table; empty = PostgreSQL
	DynamoEndpoint string // CHAT_DYNAMODB_ENDPOINT: a local DynamoDB (e.g. dynalite)

	// Media.
	S3Bucket   string // CHAT_S3_BUCKET, default parley-media
	S3Endpoint string // CHAT_S3_ENDPOINT: an S3-compatible endpoint; empty = embedded (dev) or AWS
	S3Addr     string // CHAT_S3_ADDR: embedded S3 listener in chat dev, default 127.0.0.1:8083; loopback unless S3Public
	// S3Public: CHAT_S3_PUBLIC=true lets CHAT_S3_ADDR be a non-loopback
	// address (a phone on the LAN uploading to a laptop).
	S3Public bool
	// S3CORSOrigins: CHAT_S3_CORS_ORIGINS, the browser origins the embedded
	// S3 allows (GET, HEAD, PUT); default the API's own, http://CHAT_HTTP_ADDR.
	S3CORSOrigins   []string
	S3Region        string // AWS_REGION, default us-east-1
	MaxImageBytes   int    // CHAT_MAX_IMAGE_BYTES, default 10 MiB
	MaxVideoBytes   int    // CHAT_MAX_VIDEO_BYTES, default 100 MiB
	MaxAudioBytes   int    // CHAT_MAX_AUDIO_BYTES, default 20 MiB
	ThumbnailSide   int    // CHAT_THUMBNAIL_SIZE longest side in pixels, default 320
	MaxImagePixels  int    // CHAT_MAX_IMAGE_PIXELS width×height, default 24 million
	ThumbnailMemory int64  // CHAT_THUMBNAIL_MEMORY bytes of decoded pixels at once, default 256 MiB
	MaxUploads      int    // CHAT_MAX_UPLOADS streaming through one process at once, default 32
	MaxUserUploads  int    // CHAT_MAX_USER_UPLOADS at once per user, default 3
	// MediaConfigured: a bucket is there to use (CHAT_S3_BUCKET or
	// CHAT_S3_ENDPOINT given, or the AWS transport, whose stack makes one).
	// Without it, uploads answer 503 rather than point at a bucket nobody
	// created. chat dev and chat s3 serve their own.
	MediaConfigured bool

	// AWS transport.
	EventBusName   string // CHAT_EVENT_BUS_NAME, default parley
	EventBridgeURL string // CHAT_EVENTBRIDGE_ENDPOINT: a local stand-in; empty = AWS
	// QueueURL: CHAT_QUEUE_URL, the SQS queue of `chat worker NAME` on AWS,
	// and where `chat deadletters redrive` moves its dead letters back to.
	QueueURL string
	// DeadLetterQueueURL: CHAT_DEAD_LETTER_QUEUE_URL, the dead-letter queue
	// `chat deadletters list`, `redrive` and `purge` work on with AWS.
	DeadLetterQueueURL string
	SQSEndpoint        string // CHAT_SQS_ENDPOINT: a local SQS; empty = AWS
	ArchiveARN         string // CHAT_EVENT_ARCHIVE_ARN: for chat replay on AWS
	EventBusARN        string // CHAT_EVENT_BUS_ARN: for chat replay on AWS
	RuleARNPrefix      string // CHAT_RULE_ARN_PREFIX: rule ARN without the worker name, for replay
	DevMode            bool   // set by `chat dev`
	DevSecretInUse     bool

	// Push notifications (the notifier worker).
	Push notifier.Config // CHAT_PUSH_TITLE, CHAT_PUSH_PREVIEW, CHAT_PUSH_MAX_AGE, CHAT_PUSH_RECEIPT_DELAY
	// ExpoPushURL: CHAT_EXPO_PUSH_URL, Expo's send endpoint; ExpoPushURLSet
	// says it was given (chat dev then uses Expo instead of the sink).
	ExpoPushURL     string
	ExpoPushURLSet  bool
	ExpoAccessToken string // CHAT_EXPO_ACCESS_TOKEN: optional
	// APNs: CHAT_APNS_URL (set: chat dev uses APNs), CHAT_APNS_SANDBOX,
	// CHAT_APNS_KEY or CHAT_APNS_KEY_FILE (.p8), CHAT_APNS_KEY_ID,
	// CHAT_APNS_TEAM_ID, CHAT_APNS_TOPIC. On unless no key is given.
	APNs    push.APNsConfig
	APNsSet bool
	// FCM: CHAT_FCM_URL (set: chat dev uses FCM), CHAT_FCM_CREDENTIALS or
	// CHAT_FCM_CREDENTIALS_FILE (service account JSON). On unless no
	// credentials are given.
	FCMURL         string
	FCMSet         bool
	FCMCredentials []byte

	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: sign requests to the custom
	// endpoints above (a dummy pair when unset); AWS itself reads the SDK's
	// default chain instead.
	AWSKeys awsconf.Keys
}

// concurrency is how many consumers a worker runs.
func (c Config) concurrency(worker string) int {
	if worker == events.WorkerThumbnailer {
		return c.ThumbConc
	}
	return c.WorkerConc
}

// loadConfig reads the environment through getenv and validates it,
// naming the variable in every error.
func loadConfig(getenv func(string) string, dev, needJWT bool) (Config, error) {
	c := Config{DevMode: dev}
	var errs []error
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	num := func(name string, def int, lo int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer >= %d", name, v, lo))
			return def
		}
		return n
	}
	dur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration like 500ms or 2s", name, v))
			return def
		}
		return d
	}

	c.Transport = str("CHAT_TRANSPORT", transportPostgres)
	if c.Transport != transportPostgres && c.Transport != transportAWS {
		errs = append(errs, fmt.Errorf("CHAT_TRANSPORT=%q: want postgres or aws", c.Transport))
	}
	boolean := func(name string) bool {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", name, v))
		}
		return b
	}
	// addr reads a listen address; a non-empty loopbackOnly says why it
	// must be a loopback one.
	addr := func(name, def, loopbackOnly string) string {
		v := str(name, def)
		host, _, err := net.SplitHostPort(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s=%q: want host:port: %v", name, v, err))
		case loopbackOnly != "" && host != "localhost" && !net.ParseIP(host).IsLoopback():
			errs = append(errs, fmt.Errorf("%s=%q: must be a loopback address (%s)", name, v, loopbackOnly))
		}
		return v
	}
	const unprotected = "it is not protected by authentication"
	c.HTTPAddr = addr("CHAT_HTTP_ADDR", "127.0.0.1:8080", "")
	c.GatewayAddr = addr("CHAT_GATEWAY_ADDR", "127.0.0.1:8082", "")
	c.GatewayAdmin = addr("CHAT_GATEWAY_ADMIN_ADDR", "127.0.0.1:8081", unprotected)
	c.DatabaseURL = str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chat?sslmode=disable")
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
	}
	c.DBMaxConns = num("CHAT_DB_MAX_CONNS", 0, 0)
	c.DBHost = str("CHAT_DB_HOST", "")
	if c.DBHost != "" {
		if _, _, err := splitDBHost(c.DBHost); err != nil {
			errs = append(errs, fmt.Errorf("CHAT_DB_HOST=%q: %w", c.DBHost, err))
		}
	}
	c.DBConnectTimeout = dur("CHAT_DB_CONNECT_TIMEOUT", 30*time.Second)
	errs = append(errs, c.loadJWT(getenv, dev, needJWT, dur)...)
	c.DataDir = str("CHAT_DATA_DIR", "./.chat-data")
	switch lv := strings.ToLower(str("CHAT_LOG_LEVEL", "info")); lv {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		errs = append(errs, fmt.Errorf("CHAT_LOG_LEVEL=%q: want debug, info, warn or error", lv))
	}
	c.LogFormat = str("CHAT_LOG_FORMAT", "text")
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("CHAT_LOG_FORMAT=%q: want text or json", c.LogFormat))
	}
	limits := chat.DefaultLimits()
	c.MaxTextRunes = num("CHAT_MAX_TEXT_CHARS", limits.MaxTextRunes, 1)
	c.Rates = limits.Rates
	for _, w := range chat.Writes() {
		name := "CHAT_RATE_" + strings.ToUpper(w.String())
		if v := strings.TrimSpace(getenv(name)); v != "" {
			r, err := parseRate(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
				continue
			}
			c.Rates[w] = r
		}
	}
	// Earlier names of the send limit: refused rather than ignored, so that
	// a deployment setting them does not silently lose its limit.
	for _, old := range []string{"CHAT_SEND_RATE", "CHAT_SEND_BURST"} {
		if getenv(old) != "" {
			errs = append(errs, fmt.Errorf("%s is no longer read: set CHAT_RATE_SEND=N/1s,BURST instead (default %s)", old, limits.Rates[chat.WriteSend]))
		}
	}
	consume := pgbus.DefaultConsumerConfig()
	c.WorkerAttempts = num("CHAT_WORKER_MAX_ATTEMPTS", consume.MaxAttempts, 1)
	c.WorkerConc = num("CHAT_WORKER_CONCURRENCY", consume.Concurrency, 1)
	c.WorkerBatch = num("CHAT_WORKER_BATCH_SIZE", consume.BatchSize, 1)
	if c.WorkerBatch > maxWorkerBatch {
		errs = append(errs, fmt.Errorf("CHAT_WORKER_BATCH_SIZE=%d: want at most %d (a batch is one transaction, holding its locks until it commits)", c.WorkerBatch, maxWorkerBatch))
		c.WorkerBatch = consume.BatchSize
	}
	// Thumbnails are CPU work, not round trips: a second consumer keeps
	// one slow image from holding up the next.
	c.ThumbConc = num("CHAT_THUMBNAILER_CONCURRENCY", 2, 1)
	c.FallbackPoll = dur("CHAT_BUS_FALLBACK_POLL", consume.FallbackPoll)
	c.ShutdownGrace = dur("CHAT_SHUTDOWN_TIMEOUT", 15*time.Second)
	// A client that sends its request slower than this holds a connection
	// and a goroutine for nothing; 30 s is ages for 64 KiB of JSON.
	c.HTTPReadTimeout = dur("CHAT_HTTP_READ_TIMEOUT", 30*time.Second)
	c.HTTPIdleTimeout = dur("CHAT_HTTP_IDLE_TIMEOUT", 2*time.Minute)
	// Uploads stream through the API: 10 minutes carries the largest
	// default file (100 MiB video) at about 170 KB/s. Presigned uploads go
	// straight to S3 and are not bound by it.
	c.HTTPUploadTimeout = dur("CHAT_HTTP_UPLOAD_TIMEOUT", 10*time.Minute)
	// keep reads a retention: 0 keeps everything, else at least 1h.
	keep := func(name string, def time.Duration, why string) time.Duration {
		if strings.TrimSpace(getenv(name)) == "0" {
			return 0
		}
		d := dur(name, def)
		if d < time.Hour {
			errs = append(errs, fmt.Errorf("%s=%s: want at least 1h (%s), or 0 to keep everything", name, d, why))
		}
		return d
	}
	c.ArchiveRetention = keep("CHAT_ARCHIVE_RETENTION", defaultArchiveRetention, "replay needs the recent past")
	c.ArchivePruneEvery = dur("CHAT_ARCHIVE_PRUNE_INTERVAL", time.Hour)
	c.ArchivePruneBatch = num("CHAT_ARCHIVE_PRUNE_BATCH", 1000, 1)
	c.SyncRetention = keep("CHAT_SYNC_RETENTION", defaultSyncRetention, "a client offline for less must not have to reload")
	c.SyncPruneEvery = dur("CHAT_SYNC_PRUNE_INTERVAL", time.Hour)
	c.SyncPruneBatch = num("CHAT_SYNC_PRUNE_BATCH", 1000, 1)
	if v := strings.TrimSpace(getenv("CHAT_OVERLOAD_QUEUE_AGE")); v == "0" {
		c.OverloadQueueAge = 0
	} else {
		c.OverloadQueueAge = dur("CHAT_OVERLOAD_QUEUE_AGE", defaultOverloadQueueAge)
	}
	c.OverloadSample = dur("CHAT_OVERLOAD_SAMPLE_INTERVAL", defaultOverloadSample)
	if c.OverloadSample < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("CHAT_OVERLOAD_SAMPLE_INTERVAL=%s: want at least 10ms (each sample is a query)", c.OverloadSample))
	}
	if getenv("CHAT_PPROF_ADDR") != "" {
		c.PprofAddr = addr("CHAT_PPROF_ADDR", "", unprotected)
	}
	switch v := strings.TrimSpace(getenv("CHAT_METRICS_ADDR")); v {
	case "off":
	default:
		metricsLoopback := unprotected + "; set CHAT_METRICS_PUBLIC=true to serve it beyond this machine"
		if boolean("CHAT_METRICS_PUBLIC") {
			metricsLoopback = ""
		}
		c.MetricsAddr = addr("CHAT_METRICS_ADDR", defaultMetricsAddr, metricsLoopback)
		c.MetricsAddrSet = v != ""
	}

	c.WSIdleTimeout = dur("CHAT_WS_IDLE_TIMEOUT", 10*time.Minute)
	c.WSMaxAge = dur("CHAT_WS_MAX_CONNECTION_AGE", 2*time.Hour)
	c.WSSendBuffer = num("CHAT_WS_SEND_BUFFER", 256, 1)
	c.WSMaxPerUser = num("CHAT_WS_MAX_CONNECTIONS_PER_USER", limits.MaxConnectionsPerUser, 0)
	if v := strings.TrimSpace(getenv("CHAT_PRESENCE_GRACE")); v == "0" {
		c.PresenceGrace = 0
	} else {
		c.PresenceGrace = dur("CHAT_PRESENCE_GRACE", defaultPresenceGrace)
		if c.PresenceGrace > 10*time.Minute {
			errs = append(errs, fmt.Errorf("CHAT_PRESENCE_GRACE=%s: want at most 10m (partners would see a user online that long after they left)", c.PresenceGrace))
		}
	}
	c.WSManagementURL = str("CHAT_WS_MANAGEMENT_ENDPOINT", "http://"+c.GatewayAdmin)
	c.WSManagementURLSet = strings.TrimSpace(getenv("CHAT_WS_MANAGEMENT_ENDPOINT")) != ""
	c.GatewayID = str("CHAT_GATEWAY_ID", "")
	c.GatewaySecret = str("CHAT_GATEWAY_ADMIN_SECRET", "")
	switch {
	case c.GatewaySecret == "" && dev:
		c.GatewaySecret = rand.Text() // only this process knows it
	case c.GatewaySecret != "" && len(c.GatewaySecret) < 16:
		errs = append(errs, errors.New("CHAT_GATEWAY_ADMIN_SECRET: want at least 16 characters"))
	}
	c.ConnTable = str("CHAT_CONNECTIONS_TABLE", "")
	c.DynamoEndpoint = str("CHAT_DYNAMODB_ENDPOINT", "")

	c.S3Bucket = str("CHAT_S3_BUCKET", "parley-media")
	c.S3Endpoint = str("CHAT_S3_ENDPOINT", "")
	c.S3Public = boolean("CHAT_S3_PUBLIC")
	s3Loopback := "a development server; set CHAT_S3_PUBLIC=true to serve it beyond this machine"
	if c.S3Public {
		s3Loopback = ""
	}
	c.S3Addr = addr("CHAT_S3_ADDR", "127.0.0.1:8083", s3Loopback)
	c.S3CORSOrigins = []string{apiOrigin(c.HTTPAddr)}
	if v := strings.TrimSpace(getenv("CHAT_S3_CORS_ORIGINS")); v != "" {
		c.S3CORSOrigins = nil
		for o := range strings.SplitSeq(v, ",") {
			o = strings.TrimSpace(o)
			if err := checkOrigin(o); err != nil {
				errs = append(errs, fmt.Errorf("CHAT_S3_CORS_ORIGINS=%q: %w", v, err))
				continue
			}
			c.S3CORSOrigins = append(c.S3CORSOrigins, o)
		}
	}
	c.S3Region = str("AWS_REGION", "us-east-1")
	c.MaxImageBytes = num("CHAT_MAX_IMAGE_BYTES", 10<<20, 1)
	c.MaxVideoBytes = num("CHAT_MAX_VIDEO_BYTES", 100<<20, 1)
	c.MaxAudioBytes = num("CHAT_MAX_AUDIO_BYTES", 20<<20, 1)
	c.ThumbnailSide = num("CHAT_THUMBNAIL_SIZE", 320, 16)
	c.MaxImagePixels = num("CHAT_MAX_IMAGE_PIXELS", thumbnail.DefaultMaxPixels, 1)
	c.ThumbnailMemory = int64(num("CHAT_THUMBNAIL_MEMORY", thumbnail.DefaultMemory, 1))
	if need := thumbnail.MaxDecodeCost(c.imageLimits()); c.ThumbnailMemory < need {
		errs = append(errs, fmt.Errorf("CHAT_THUMBNAIL_MEMORY=%d: want at least %d bytes, what decoding one image of CHAT_MAX_IMAGE_PIXELS=%d may take (8 bytes a pixel)",
			c.ThumbnailMemory, need, c.MaxImagePixels))
	}
	c.PendingReadRetention = dur("CHAT_PENDING_READ_RETENTION", persister.DefaultPendingReadRetention)
	c.MaxGroupMembers = num("CHAT_GROUP_MAX_MEMBERS", chat.DefaultMaxGroupMembers, 2)
	c.EditWindow = dur("CHAT_EDIT_WINDOW", events.DefaultEditWindow)
	c.UnsendWindow = dur("CHAT_UNSEND_WINDOW", events.DefaultUnsendWindow)
	for _, w := range []struct {
		name string
		d    time.Duration
	}{{"CHAT_EDIT_WINDOW", c.EditWindow}, {"CHAT_UNSEND_WINDOW", c.UnsendWindow}} {
		if w.d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%s: want a positive duration", w.name, w.d))
		}
	}
	c.MaxUploads = num("CHAT_MAX_UPLOADS", limits.MaxUploads, 1)
	c.MaxUserUploads = num("CHAT_MAX_USER_UPLOADS", limits.MaxUserUploads, 1)
	c.MediaConfigured = strings.TrimSpace(getenv("CHAT_S3_BUCKET")) != "" || c.S3Endpoint != "" || c.Transport == transportAWS

	c.EventBusName = str("CHAT_EVENT_BUS_NAME", "parley")
	c.EventBridgeURL = str("CHAT_EVENTBRIDGE_ENDPOINT", "")
	c.QueueURL = str("CHAT_QUEUE_URL", "")
	c.DeadLetterQueueURL = str("CHAT_DEAD_LETTER_QUEUE_URL", "")
	c.SQSEndpoint = str("CHAT_SQS_ENDPOINT", "")
	c.ArchiveARN = str("CHAT_EVENT_ARCHIVE_ARN", "")
	c.EventBusARN = str("CHAT_EVENT_BUS_ARN", "")
	c.RuleARNPrefix = str("CHAT_RULE_ARN_PREFIX", "")
	errs = append(errs, c.loadPush(getenv, str, dur, boolean)...)
	c.AWSKeys = awsconf.Keys{AccessKeyID: str("AWS_ACCESS_KEY_ID", ""), SecretAccessKey: str("AWS_SECRET_ACCESS_KEY", "")}
	var err error
	if c.Tracing, err = tracing.ConfigFromEnv(getenv); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// imageLimits are the bounds images are held to, at upload and when
// thumbnailed (the memory budget is the thumbnailer's own).
// defaultMetricsAddr is the admin listener's default: 9464 is the port
// commonly used by Prometheus exporters of applications, clear of the
// chat's 8080-8083 and of Prometheus' own 9090.
const defaultMetricsAddr = "127.0.0.1:9464"

func (c Config) imageLimits() thumbnail.Limits {
	return thumbnail.Limits{MaxPixels: int64(c.MaxImagePixels), MaxBytes: int64(c.MaxImageBytes)}
}

// apiOrigin is the browser origin of the API on httpAddr: a page the dev
// server serves there. An unspecified host is reached as 127.0.0.1.
func apiOrigin(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "http://" + httpAddr // already reported by addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// checkOrigin accepts a browser origin: scheme://host[:port], nothing more.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || o != u.Scheme+"://"+u.Host {
		return fmt.Errorf("%q is not an origin like https://chat.example.com or http://127.0.0.1:8080", o)
	}
	return nil
}

// parseRate reads a rate limit written N/PERIOD[,BURST]: N writes per
// PERIOD (a Go duration; a bare unit means one of it: 20/s, 30/1h), with
// bursts of up to BURST (default N); "0" switches the limit off.
func parseRate(v string) (chat.Rate, error) {
	if v == "0" {
		return chat.Rate{}, nil
	}
	const want = "want N/PERIOD[,BURST] such as 20/1s,40 or 30/1h, or 0 for no limit"
	spec, burstText, hasBurst := strings.Cut(v, ",")
	countText, periodText, ok := strings.Cut(spec, "/")
	if !ok {
		return chat.Rate{}, errors.New(want)
	}
	count, err := strconv.Atoi(strings.TrimSpace(countText))
	if err != nil || count < 1 {
		return chat.Rate{}, fmt.Errorf("the count must be a positive integer: %s", want)
	}
	periodText = strings.TrimSpace(periodText)
	if periodText != "" && (periodText[0] < '0' || periodText[0] > '9') {
		periodText = "1" + periodText
	}
	period, err := time.ParseDuration(periodText)
	if err != nil || period <= 0 {
		return chat.Rate{}, fmt.Errorf("the period must be a positive duration: %s", want)
	}
	burst := count
	if hasBurst {
		if burst, err = strconv.Atoi(strings.TrimSpace(burstText)); err != nil || burst < 1 {
			return chat.Rate{}, fmt.Errorf("the burst must be a positive integer: %s", want)
		}
	}
	return chat.Rate{PerSecond: float64(count) / period.Seconds(), Burst: burst}, nil
}

// awsAt returns the AWS client options for a custom endpoint, or for AWS
// itself when endpoint is empty.
func (c Config) awsAt(endpoint string) awsconf.Options {
	return awsconf.Options{Endpoint: endpoint, Keys: c.AWSKeys}
}

// loadPush reads the notifier's settings. A provider's endpoint must be
// https, or http to a loopback address (a local stand-in); in chat dev,
// setting it is what turns that provider on in place of the sink.
func (c *Config) loadPush(getenv func(string) string, str func(string, string) string,
	dur func(string, time.Duration) time.Duration, boolean func(string) bool) []error {
	var errs []error
	def := notifier.DefaultConfig()
	c.Push = def
	c.Push.Title = str("CHAT_PUSH_TITLE", def.Title)
	if strings.TrimSpace(getenv("CHAT_PUSH_PREVIEW")) != "" {
		c.Push.Preview = boolean("CHAT_PUSH_PREVIEW")
	}
	c.Push.MaxAge = dur("CHAT_PUSH_MAX_AGE", def.MaxAge)
	c.Push.ReceiptDelay = dur("CHAT_PUSH_RECEIPT_DELAY", def.ReceiptDelay)
	endpoint := func(name, def string) (string, bool) {
		v := str(name, "")
		if v == "" {
			return def, false
		}
		if err := push.CheckEndpoint(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return v, true
	}
	// secret reads a credential given inline (NAME, from Secrets Manager
	// on AWS) or as a file (NAME_FILE).
	secret := func(name string) []byte {
		if v := getenv(name); strings.TrimSpace(v) != "" {
			return []byte(v)
		}
		path := str(name+"_FILE", "")
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
		}
		return b
	}
	c.ExpoPushURL, c.ExpoPushURLSet = endpoint("CHAT_EXPO_PUSH_URL", push.ExpoURL)
	c.ExpoAccessToken = str("CHAT_EXPO_ACCESS_TOKEN", "")

	apnsDefault := push.APNsProduction
	if boolean("CHAT_APNS_SANDBOX") {
		apnsDefault = push.APNsSandbox
	}
	c.APNs.URL, c.APNsSet = endpoint("CHAT_APNS_URL", apnsDefault)
	c.APNs.KeyPEM = secret("CHAT_APNS_KEY")
	c.APNs.KeyID, c.APNs.TeamID, c.APNs.Topic = str("CHAT_APNS_KEY_ID", ""), str("CHAT_APNS_TEAM_ID", ""), str("CHAT_APNS_TOPIC", "")
	if c.APNs.KeyPEM != nil || c.APNsSet {
		if _, err := push.NewAPNs(c.APNs, nil); err != nil {
			errs = append(errs, fmt.Errorf("CHAT_APNS_KEY, CHAT_APNS_KEY_ID, CHAT_APNS_TEAM_ID, CHAT_APNS_TOPIC: %w", err))
		}
	}
	c.FCMURL, c.FCMSet = endpoint("CHAT_FCM_URL", push.FCMURL)
	c.FCMCredentials = secret("CHAT_FCM_CREDENTIALS")
	if c.FCMCredentials != nil || c.FCMSet {
		if _, err := push.NewFCM(c.FCMURL, c.FCMCredentials, nil); err != nil {
			errs = append(errs, fmt.Errorf("CHAT_FCM_CREDENTIALS: %w", err))
		}
	}
	return errs
}
