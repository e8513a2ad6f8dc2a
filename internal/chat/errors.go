package chat

import (
	"errors"
	"fmt"
	"time"
)

// Code is a stable, documented error code clients can switch on.
type Code string

const (
	CodeBadRequest       Code = "bad_request"       // malformed input: not JSON, unknown fields, bad ids
	CodeInvalid          Code = "invalid_argument"  // well-formed but not acceptable
	CodeUnauthenticated  Code = "unauthenticated"   // missing, expired or forged token
	CodeForbidden        Code = "forbidden"         // not a participant
	CodeNotFound         Code = "not_found"         // no such conversation or message
	CodeConflict         Code = "conflict"          // client_message_id reused with other content
	CodeTooLarge         Code = "payload_too_large" // body or file over the limit
	CodeUnsupportedMedia Code = "unsupported_media" // file type not allowed
	CodeRateLimited      Code = "rate_limited"      // too many requests
	CodeUnavailable      Code = "unavailable"       // the bus or database refused; retry
	// CodeOverloaded refuses new work while the pipeline behind the bus
	// lags (see Admission); nothing of the refused request happened, and
	// a retry after Error.RetryAfter is welcome.
	CodeOverloaded Code = "overloaded"
	// CodeNotConfigured is a feature this server was deployed without
	// (media without a bucket). Unlike CodeUnavailable, retrying does not
	// help until an operator changes the configuration.
	CodeNotConfigured Code = "not_configured"
	CodeInternal      Code = "internal" // a bug; logged
)

// Error is the one error type the edges map: to an HTTP status, to a
// WebSocket error frame.
type Error struct {
	Code    Code
	Message string
	Err     error // the cause, logged, never shown to clients
	// RetryAfter is how long a client should wait before retrying, for
	// the codes that ask for a retry (unavailable, overloaded,
	// rate_limited); 0 otherwise.
	RetryAfter time.Duration
}

// RetryAfter is the wait the retryable refusals (CodeUnavailable,
// CodeOverloaded) ask for. A second is longer than a lagging queue's usual
// recovery and short enough that a user barely notices; clients add jitter.
const RetryAfter = time.Second

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a client-facing message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// unavailable wraps an infrastructure failure the client should retry;
// what names the part that failed ("the database").
func unavailable(what string, err error) *Error {
	return &Error{Code: CodeUnavailable, Message: what + " is temporarily unavailable; retry", Err: err, RetryAfter: RetryAfter}
}

// internal wraps an unexpected failure.
func internal(err error) *Error {
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}

// AsError returns err as *Error, treating anything else as internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return internal(err)
}
