package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/pgbus"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/chat"
)

// devJWTSecret is used only by `chat dev`, which says so at start-up.
const devJWTSecret = "parley-development-secret-do-not-use-in-production"

// Overload defaults: a queue that lags 100 ms is far behind (a keeping-up
// pipeline's oldest event is a few milliseconds old), and sampling as often
// costs ten small queries a second per process.
const (
	defaultOverloadQueueAge = 150 * time.Millisecond
	defaultOverloadSample   = 100 * time.Millisecond
)

// Transports (CHAT_TRANSPORT).
const (
	transportPostgres = "postgres"
	transportAWS      = "aws"
)

// Config is every setting, read from the environment once at start-up.
// Each field names its variable; README.md documents them.
type Config struct {
	Transport      string        // CHAT_TRANSPORT: postgres (default) or aws
	HTTPAddr       string        // CHAT_HTTP_ADDR: REST (and /ws in chat dev), default 127.0.0.1:8080
	GatewayAddr    string        // CHAT_GATEWAY_ADDR: /ws of chat gateway, default 127.0.0.1:8082
	GatewayAdmin   string        // CHAT_GATEWAY_ADMIN_ADDR, default 127.0.0.1:8081
	DatabaseURL    string        // DATABASE_URL
	DBMaxConns     int           // CHAT_DB_MAX_CONNS: main pool size; 0 = sized by what the process runs
	JWTSecret      string        // JWT_SECRET
	DataDir        string        // CHAT_DATA_DIR, default ./.chat-data
	LogLevel       slog.Level    // CHAT_LOG_LEVEL: debug, info (default), warn, error
	LogFormat      string        // CHAT_LOG_FORMAT: text (default) or json
	MaxTextRunes   int           // CHAT_MAX_TEXT_CHARS, default 4000
	SendRate       float64       // CHAT_SEND_RATE per user per second, default 20; 0 = no limit
	SendBurst      int           // CHAT_SEND_BURST, default 40
	WorkerAttempts int           // CHAT_WORKER_MAX_ATTEMPTS before dead-lettering, default 5
	WorkerConc     int           // CHAT_WORKER_CONCURRENCY consumers per worker queue, default 1
	ThumbConc      int           // CHAT_THUMBNAILER_CONCURRENCY consumers of the thumbnailer, default 2
	FallbackPoll   time.Duration // CHAT_BUS_FALLBACK_POLL, default 1s
	// OverloadQueueAge: refuse sends while the oldest event waiting for the
	// persister or fanout is older (CHAT_OVERLOAD_QUEUE_AGE, default 150ms;
	// 0 = never refuse). Local transport only.
	OverloadQueueAge time.Duration
	OverloadSample   time.Duration // CHAT_OVERLOAD_SAMPLE_INTERVAL, default 100ms
	ShutdownGrace    time.Duration // CHAT_SHUTDOWN_TIMEOUT, default 15s
	PprofAddr        string        // CHAT_PPROF_ADDR: serve net/http/pprof there (loopback only); empty = off

	// WebSocket gateway (local) and fanout.
	WSIdleTimeout   time.Duration // CHAT_WS_IDLE_TIMEOUT, default 10m (API Gateway's)
	WSMaxAge        time.Duration // CHAT_WS_MAX_CONNECTION_AGE, default 2h (API Gateway's)
	WSSendBuffer    int           // CHAT_WS_SEND_BUFFER queued frames per connection, default 256
	WSMaxPerUser    int           // CHAT_WS_MAX_CONNECTIONS_PER_USER, default 10; 0 = no limit
	WSManagementURL string        // CHAT_WS_MANAGEMENT_ENDPOINT, default http://CHAT_GATEWAY_ADMIN_ADDR
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
	S3Bucket      string // CHAT_S3_BUCKET, default parley-media
	S3Endpoint    string // CHAT_S3_ENDPOINT: an S3-compatible endpoint; empty = embedded (dev) or AWS
	S3Addr        string // CHAT_S3_ADDR: embedded S3 listener in chat dev, default 127.0.0.1:8083
	S3Region      string // AWS_REGION, default us-east-1
	MaxImageBytes int    // CHAT_MAX_IMAGE_BYTES, default 10 MiB
	MaxVideoBytes int    // CHAT_MAX_VIDEO_BYTES, default 100 MiB
	MaxAudioBytes int    // CHAT_MAX_AUDIO_BYTES, default 20 MiB
	ThumbnailSide int    // CHAT_THUMBNAIL_SIZE longest side in pixels, default 320
	// MediaConfigured: a bucket is there to use (CHAT_S3_BUCKET or
	// CHAT_S3_ENDPOINT given, or the AWS transport, whose stack makes one).
	// Without it, uploads answer 503 rather than point at a bucket nobody
	// created. chat dev and chat s3 serve their own.
	MediaConfigured bool

	// AWS transport.
	EventBusName   string // CHAT_EVENT_BUS_NAME, default parley
	EventBridgeURL string // CHAT_EVENTBRIDGE_ENDPOINT: a local stand-in; empty = AWS
	QueueURL       string // CHAT_QUEUE_URL: the SQS queue of `chat worker NAME` on AWS
	SQSEndpoint    string // CHAT_SQS_ENDPOINT: a local SQS; empty = AWS
	ArchiveARN     string // CHAT_EVENT_ARCHIVE_ARN: for chat replay on AWS
	EventBusARN    string // CHAT_EVENT_BUS_ARN: for chat replay on AWS
	RuleARNPrefix  string // CHAT_RULE_ARN_PREFIX: rule ARN without the worker name, for replay
	DevMode        bool   // set by `chat dev`
	DevSecretInUse bool

	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: sign requests to the custom
	// endpoints above (a dummy pair when unset); AWS itself reads the SDK's
	// default chain instead.
	AWSKeys awsconf.Keys
}

// loadConfig reads the environment through getenv and validates it,
// naming the variable in every error.
// concurrency is how many consumers a worker runs.
func (c Config) concurrency(worker string) int {
	if worker == events.WorkerThumbnailer {
		return c.ThumbConc
	}
	return c.WorkerConc
}

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
	addr := func(name, def string, loopback bool) string {
		v := str(name, def)
		host, _, err := net.SplitHostPort(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s=%q: want host:port: %v", name, v, err))
		case loopback && host != "localhost" && !net.ParseIP(host).IsLoopback():
			errs = append(errs, fmt.Errorf("%s=%q: must be a loopback address (it is not protected by authentication)", name, v))
		}
		return v
	}
	c.HTTPAddr = addr("CHAT_HTTP_ADDR", "127.0.0.1:8080", false)
	c.GatewayAddr = addr("CHAT_GATEWAY_ADDR", "127.0.0.1:8082", false)
	c.GatewayAdmin = addr("CHAT_GATEWAY_ADMIN_ADDR", "127.0.0.1:8081", true)
	c.DatabaseURL = str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chat?sslmode=disable")
	if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
	}
	c.DBMaxConns = num("CHAT_DB_MAX_CONNS", 0, 0)
	c.JWTSecret = getenv("JWT_SECRET")
	if c.JWTSecret == "" && dev {
		c.JWTSecret, c.DevSecretInUse = devJWTSecret, true
	}
	if c.JWTSecret == "" && needJWT {
		errs = append(errs, errors.New("JWT_SECRET is required (the HS256 secret shared with the auth service)"))
	} else if c.JWTSecret != "" && len(c.JWTSecret) < 16 {
		errs = append(errs, errors.New("JWT_SECRET must be at least 16 bytes"))
	}
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
	c.SendRate = limits.SendRate
	if v := getenv("CHAT_SEND_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			errs = append(errs, fmt.Errorf("CHAT_SEND_RATE=%q: want a non-negative number (0 disables)", v))
		} else {
			c.SendRate = f // 0: no limit
		}
	}
	c.SendBurst = num("CHAT_SEND_BURST", limits.SendBurst, 1)
	consume := pgbus.DefaultConsumerConfig()
	c.WorkerAttempts = num("CHAT_WORKER_MAX_ATTEMPTS", consume.MaxAttempts, 1)
	c.WorkerConc = num("CHAT_WORKER_CONCURRENCY", consume.Concurrency, 1)
	// Thumbnails are CPU work, not round trips: a second consumer keeps
	// one slow image from holding up the next.
	c.ThumbConc = num("CHAT_THUMBNAILER_CONCURRENCY", 2, 1)
	c.FallbackPoll = dur("CHAT_BUS_FALLBACK_POLL", consume.FallbackPoll)
	c.ShutdownGrace = dur("CHAT_SHUTDOWN_TIMEOUT", 15*time.Second)
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
		c.PprofAddr = addr("CHAT_PPROF_ADDR", "", true)
	}

	c.WSIdleTimeout = dur("CHAT_WS_IDLE_TIMEOUT", 10*time.Minute)
	c.WSMaxAge = dur("CHAT_WS_MAX_CONNECTION_AGE", 2*time.Hour)
	c.WSSendBuffer = num("CHAT_WS_SEND_BUFFER", 256, 1)
	c.WSMaxPerUser = num("CHAT_WS_MAX_CONNECTIONS_PER_USER", limits.MaxConnectionsPerUser, 0)
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
	c.S3Addr = addr("CHAT_S3_ADDR", "127.0.0.1:8083", false)
	c.S3Region = str("AWS_REGION", "us-east-1")
	c.MaxImageBytes = num("CHAT_MAX_IMAGE_BYTES", 10<<20, 1)
	c.MaxVideoBytes = num("CHAT_MAX_VIDEO_BYTES", 100<<20, 1)
	c.MaxAudioBytes = num("CHAT_MAX_AUDIO_BYTES", 20<<20, 1)
	c.ThumbnailSide = num("CHAT_THUMBNAIL_SIZE", 320, 16)
	c.MediaConfigured = strings.TrimSpace(getenv("CHAT_S3_BUCKET")) != "" || c.S3Endpoint != "" || c.Transport == transportAWS

	c.EventBusName = str("CHAT_EVENT_BUS_NAME", "parley")
	c.EventBridgeURL = str("CHAT_EVENTBRIDGE_ENDPOINT", "")
	c.QueueURL = str("CHAT_QUEUE_URL", "")
	c.SQSEndpoint = str("CHAT_SQS_ENDPOINT", "")
	c.ArchiveARN = str("CHAT_EVENT_ARCHIVE_ARN", "")
	c.EventBusARN = str("CHAT_EVENT_BUS_ARN", "")
	c.RuleARNPrefix = str("CHAT_RULE_ARN_PREFIX", "")
	c.AWSKeys = awsconf.Keys{AccessKeyID: str("AWS_ACCESS_KEY_ID", ""), SecretAccessKey: str("AWS_SECRET_ACCESS_KEY", "")}
	return c, errors.Join(errs...)
}

// awsAt returns the AWS client options for a custom endpoint, or for AWS
// itself when endpoint is empty.
func (c Config) awsAt(endpoint string) awsconf.Options {
	return awsconf.Options{Endpoint: endpoint, Keys: c.AWSKeys}
}
