// Package s3local serves an S3-compatible API from files on disk, so the
// app runs locally without AWS. It is meant for development and tests: it
// checks every request's AWS Signature Version 4 against one key pair, as
// S3 would, but has no users, policies or ACLs beyond that.
package s3local

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/spf13/afero"

	"github.com/parleychat/parley/internal/awsconf"
)

// Config is what a Server accepts. The zero value takes the local key pair
// and allows no browser origin.
type Config struct {
	// Keys is the one access key pair requests must be signed with; unless
	// both halves are set, the fixed local pair the app's clients sign
	// with by default (awsconf.Keys.OrLocal).
	Keys awsconf.Keys
	// AllowedOrigins are the browser origins (scheme://host[:port]) that
	// may GET, HEAD and PUT through CORS.
	AllowedOrigins []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is an embedded S3 endpoint backed by files under one directory.
// Objects and their metadata survive a restart over the same directory.
//
// Every request must be signed (Authorization header or presigned query),
// within 15 minutes of the server's clock and, when presigned, before it
// expires; anything else is refused with S3's XML errors. Object keys must
// not hold "." or ".." segments, empty segments, backslashes or NUL.
type Server struct {
	backend *s3afero.MultiBucketBackend
	handler http.Handler
	logger  *slog.Logger

	// ReadTimeout bounds a request's headers and body (a presigned PUT of
	// a large file arrives here), IdleTimeout a kept-alive connection
	// between requests; 0 means none. Set them before Serve.
	ReadTimeout, IdleTimeout time.Duration
}

var _ http.Handler = (*Server)(nil)

// New opens (or creates) the store under dir.
func New(dir string, cfg Config, logger *slog.Logger) (*Server, error) {
	if dir == "" {
		return nil, errors.New("s3local: empty directory")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("s3local: create %s: %w", dir, err)
	}
	backend, err := s3afero.MultiBucket(afero.NewBasePathFs(afero.NewOsFs(), dir))
	if err != nil {
		return nil, fmt.Errorf("s3local: open backend: %w", err)
	}
	fake := gofakes3.New(backend,
		gofakes3.WithLogger(slogAdapter{logger}),
		// Versioning would keep every overwritten thumbnail forever.
		gofakes3.WithoutVersioning(),
	)
	s := &Server{backend: backend, logger: logger}
	s.handler = &cors{origins: cfg.AllowedOrigins, next: guard(newVerifier(cfg.Keys.OrLocal(), cfg.Now), logger, fake.Server())}
	return s, nil
}

// EnsureBucket creates the bucket if it does not exist yet.
func (s *Server) EnsureBucket(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := gofakes3.ValidateBucketName(name); err != nil {
		return fmt.Errorf("s3local: bucket %q: %w", name, err)
	}
	exists, err := s.backend.BucketExists(name)
	if err != nil {
		return fmt.Errorf("s3local: bucket %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if err := s.backend.CreateBucket(name); err != nil && !gofakes3.IsAlreadyExists(err) {
		return fmt.Errorf("s3local: create bucket %q: %w", name, err)
	}
	s.logger.Info("s3local: bucket created", "bucket", name)
	return nil
}

// ServeHTTP implements the S3 REST API (path-style addressing only).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Serve answers S3 requests on ln until ctx is cancelled, then shuts down
// gracefully, waiting up to 2 s for requests in flight. It returns nil after a
// shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.ReadTimeout,
		IdleTimeout:       s.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	var shutdownErr error
	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			// Connections a client opened but never used count as active
			// for a while; they carry nothing worth waiting for.
			shutdownErr = srv.Close()
		}
	})
	err := srv.Serve(ln)
	if stop() {
		// Serve failed on its own; ctx was never cancelled.
		return fmt.Errorf("s3local: serve: %w", err)
	}
	<-shutdownDone
	if shutdownErr != nil {
		return fmt.Errorf("s3local: shutdown: %w", shutdownErr)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("s3local: serve: %w", err)
	}
	return nil
}

// guard refuses what gofakes3 must not see: unsafe keys (its file backend
// joins them into paths) and requests without a valid signature.
func guard(v *verifier, logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Stored bytes are served as their declared type, never sniffed
		// into HTML by a browser.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if err := checkPath(r.URL.Path); err != nil {
			writeError(w, err)
			return
		}
		cleanup, err := v.authenticate(r)
		if err != nil {
			logger.DebugContext(r.Context(), "s3local: request refused", "method", r.Method, "path", r.URL.Path, "code", err.code, "reason", err.message)
			writeError(w, err)
			return
		}
		defer cleanup()
		next.ServeHTTP(w, r)
	})
}

// checkPath accepts "/", "/bucket", "/bucket/" and "/bucket/key" where no
// segment of the bucket or key is empty, "." or "..", and none holds a
// backslash or NUL.
func checkPath(p string) *s3Error {
	if p == "/" {
		return nil
	}
	bucket, key, hasKey := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	segments := []string{bucket}
	if hasKey && key != "" {
		segments = append(segments, strings.Split(key, "/")...)
	}
	for _, seg := range segments {
		switch {
		case seg == "", seg == ".", seg == "..":
			return refuse(http.StatusBadRequest, "InvalidArgument", "Object keys must not have empty, \".\" or \"..\" segments: %q", p)
		case strings.ContainsAny(seg, "\\\x00"):
			return refuse(http.StatusBadRequest, "InvalidArgument", "Object keys must not hold a backslash or NUL: %q", p)
		}
	}
	return nil
}

func writeError(w http.ResponseWriter, e *s3Error) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.status)
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte(e.message))
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message></Error>`, e.code, msg.String())
}

// slogAdapter routes gofakes3's log lines to slog. Its INFO lines are one
// per request, so they go to Debug.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Print(level gofakes3.LogLevel, v ...any) {
	msg := "s3local: " + fmt.Sprintln(v...)
	msg = msg[:len(msg)-1] // Sprintln spaces operands; drop its newline
	switch level {
	case gofakes3.LogErr:
		a.l.Error(msg)
	case gofakes3.LogWarn:
		a.l.Warn(msg)
	default:
		a.l.Debug(msg)
	}
}
