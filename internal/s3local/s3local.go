// Package s3local serves an S3-compatible API from files on disk, so the
// app runs locally without AWS. It is meant for development and tests only:
// request signatures are not checked.
package s3local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
	"github.com/spf13/afero"
)

// Server is an embedded S3 endpoint backed by files under one directory.
// Objects and their metadata survive a restart over the same directory.
//
// It accepts any credentials and ignores signatures. The one part of
// presigning it does honour is expiry (X-Amz-Date + X-Amz-Expires), so that
// expired presigned URLs fail locally as they would on AWS.
type Server struct {
	backend *s3afero.MultiBucketBackend
	handler http.Handler
	logger  *slog.Logger
	now     func() time.Time

	// ReadTimeout bounds a request's headers and body (a presigned PUT of
	// a large file arrives here), IdleTimeout a kept-alive connection
	// between requests; 0 means none. Set them before Serve.
	ReadTimeout, IdleTimeout time.Duration
}

var _ http.Handler = (*Server)(nil)

// New opens (or creates) the store under dir.
func New(dir string, logger *slog.Logger) (*Server, error) {
	if dir == "" {
		return nil, errors.New("s3local: empty directory")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
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
	s := &Server{backend: backend, logger: logger, now: time.Now}
	s.handler = s.checkExpiry(fake.Server())
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

// checkExpiry refuses presigned requests whose validity window has passed,
// with the same status and code as S3. Malformed values are refused too.
func (s *Server) checkExpiry(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		expires, date := q.Get("X-Amz-Expires"), q.Get("X-Amz-Date")
		if expires == "" && date == "" {
			next.ServeHTTP(w, r)
			return
		}
		signedAt, errDate := time.Parse("20060102T150405Z", date)
		secs, errExp := strconv.Atoi(expires)
		switch {
		case errDate != nil || errExp != nil || secs < 0:
			writeError(w, http.StatusForbidden, "AuthorizationQueryParametersError",
				"X-Amz-Date and X-Amz-Expires must be a valid date and a non-negative number of seconds")
		case s.now().After(signedAt.Add(time.Duration(secs) * time.Second)):
			writeError(w, http.StatusForbidden, "AccessDenied", "Request has expired")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
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
