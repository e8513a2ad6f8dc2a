package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley/internal/awsconf"
)

// devJWTSecret is used only by `chat dev`, which says so at start-up.
const devJWTSecret = "parley-development-secret-do-not-use-in-production"

// Config is every setting, read from the environment once at start-up.
// Each field names its variable; README.md documents them.
type Config struct {
	Transport      string        // CHAT_TRANSPORT: postgres (default) or aws
	HTTPAddr       string        // CHAT_HTTP_ADDR, default 127.0.0.1:8080
	GatewayAdmin   string        // CHAT_GATEWAY_ADMIN_ADDR, default 127.0.0.1:8081
	DatabaseURL    string        // DATABASE_URL
	JWTSecret      string        // JWT_SECRET
	DataDir        string        // CHAT_DATA_DIR, default ./.chat-data
	LogLevel       slog.Level    // CHAT_LOG_LEVEL: debug, info (default), warn, error
	LogFormat      string        // CHAT_LOG_FORMAT: text (default) or json
	MaxTextRunes   int           // CHAT_MAX_TEXT_CHARS, default 4000
	SendRate       float64       // CHAT_SEND_RATE per user per second, default 20 (0 disables)
	SendBurst      int           // CHAT_SEND_BURST, default 40
	WorkerAttempts int           // CHAT_WORKER_MAX_ATTEMPTS before dead-lettering, default 5
	WorkerConc     int           // CHAT_WORKER_CONCURRENCY consumers per worker queue, default 4
	FallbackPoll   time.Duration // CHAT_BUS_FALLBACK_POLL, default 1s
	ShutdownGrace  time.Duration // CHAT_SHUTDOWN_TIMEOUT, default 15s
	PprofAddr      string        // CHAT_PPROF_ADDR: serve net/http/pprof there (loopback only); empty = off

	// WebSocket gateway (local) and fanout.
	WSIdleTimeout   time.Duration // CHAT_WS_IDLE_TIMEOUT, default 10m (API Gateway's)
	WSMaxAge        time.Duration // CHAT_WS_MAX_CONNECTION_AGE, default 2h (API Gateway's)
	WSSendBuffer    int           // CHAT_WS_SEND_BUFFER queued frames per connection, default 256
	WSManagementURL string        // CHAT_WS_MANAGEMENT_ENDPOINT, default http://CHAT_GATEWAY_ADMIN_ADDR
	ConnTable       string        // CHAT_CONNECTIONS_TABLE: DynamoDB table; empty = PostgreSQL
	DynamoEndpoint  string        // CHAT_DYNAMODB_ENDPOINT: a local DynamoDB (e.g. dynalite)

	// Media.
	S3Bucket      string // CHAT_S3_BUCKET, default parley-media
	S3Endpoint    string // CHAT_S3_ENDPOINT: an S3-compatible endpoint; empty = embedded (dev) or AWS
	S3Addr        string // CHAT_S3_ADDR: embedded S3 listener in chat dev, default 127.0.0.1:8083
	S3Region      string // AWS_REGION, default us-east-1
	MaxImageBytes int    // CHAT_MAX_IMAGE_BYTES, default 10 MiB
	MaxVideoBytes int    // CHAT_MAX_VIDEO_BYTES, default 100 MiB
	MaxAudioBytes int    // CHAT_MAX_AUDIO_BYTES, default 20 MiB
	ThumbnailSide int    // CHAT_THUMBNAIL_SIZE longest side in pixels, default 320
	EmbeddedS3    bool   // chat dev without CHAT_S3_ENDPOINT

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

	c.Transport = str("CHAT_TRANSPORT", "postgres")
	if c.Transport != "postgres" && c.Transport != "aws" {
		errs = append(errs, fmt.Errorf("CHAT_TRANSPORT=%q: want postgres or aws", c.Transport))
	}
	c.HTTPAddr = str("CHAT_HTTP_ADDR", "127.0.0.1:8080")
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("CHAT_HTTP_ADDR=%q: %v", c.HTTPAddr, err))
	}
	c.GatewayAdmin = str("CHAT_GATEWAY_ADMIN_ADDR", "127.0.0.1:8081")
	if host, _, err := net.SplitHostPort(c.GatewayAdmin); err != nil {
		errs = append(errs, fmt.Errorf("CHAT_GATEWAY_ADMIN_ADDR=%q: %v", c.GatewayAdmin, err))
	} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		errs = append(errs, fmt.Errorf("CHAT_GATEWAY_ADMIN_ADDR=%q: the management API must listen on a loopback address", c.GatewayAdmin))
	}
	c.DatabaseURL = str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chat?sslmode=disable")
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
	c.MaxTextRunes = num("CHAT_MAX_TEXT_CHARS", 4000, 1)
	if v := getenv("CHAT_SEND_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			errs = append(errs, fmt.Errorf("CHAT_SEND_RATE=%q: want a non-negative number (0 disables)", v))
		}
		c.SendRate = f
		if f == 0 {
			c.SendRate = -1 // explicit 0: no limit
		}
	}
	c.SendBurst = num("CHAT_SEND_BURST", 40, 1)
	c.WorkerAttempts = num("CHAT_WORKER_MAX_ATTEMPTS", 5, 1)
	c.WorkerConc = num("CHAT_WORKER_CONCURRENCY", 4, 1)
	c.FallbackPoll = dur("CHAT_BUS_FALLBACK_POLL", time.Second)
	c.ShutdownGrace = dur("CHAT_SHUTDOWN_TIMEOUT", 15*time.Second)
	c.PprofAddr = str("CHAT_PPROF_ADDR", "")
	if c.PprofAddr != "" {
		if host, _, err := net.SplitHostPort(c.PprofAddr); err != nil || (host != "localhost" && !net.ParseIP(host).IsLoopback()) {
			errs = append(errs, fmt.Errorf("CHAT_PPROF_ADDR=%q: must be a loopback host:port", c.PprofAddr))
		}
	}

	c.WSIdleTimeout = dur("CHAT_WS_IDLE_TIMEOUT", 10*time.Minute)
	c.WSMaxAge = dur("CHAT_WS_MAX_CONNECTION_AGE", 2*time.Hour)
	c.WSSendBuffer = num("CHAT_WS_SEND_BUFFER", 256, 1)
	c.WSManagementURL = str("CHAT_WS_MANAGEMENT_ENDPOINT", "http://"+c.GatewayAdmin)
	c.ConnTable = str("CHAT_CONNECTIONS_TABLE", "")
	c.DynamoEndpoint = str("CHAT_DYNAMODB_ENDPOINT", "")

	c.S3Bucket = str("CHAT_S3_BUCKET", "parley-media")
	c.S3Endpoint = str("CHAT_S3_ENDPOINT", "")
	c.S3Addr = str("CHAT_S3_ADDR", "127.0.0.1:8083")
	c.S3Region = str("AWS_REGION", "us-east-1")
	c.MaxImageBytes = num("CHAT_MAX_IMAGE_BYTES", 10<<20, 1)
	c.MaxVideoBytes = num("CHAT_MAX_VIDEO_BYTES", 100<<20, 1)
	c.MaxAudioBytes = num("CHAT_MAX_AUDIO_BYTES", 20<<20, 1)
	c.ThumbnailSide = num("CHAT_THUMBNAIL_SIZE", 320, 16)
	if dev && c.S3Endpoint == "" {
		c.EmbeddedS3 = true
		if _, _, err := net.SplitHostPort(c.S3Addr); err != nil {
			errs = append(errs, fmt.Errorf("CHAT_S3_ADDR=%q: %v", c.S3Addr, err))
		}
	}

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
