// Package api holds the chat's transports: the REST handlers, the media
// HTTP handlers and the WebSocket route handlers. Each authenticates,
// decodes, makes one call to the chat service (internal/chat) and maps its
// error once: to an HTTP status here, to an error frame on WebSocket.
package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/parleychat/parley/internal/chat"
)

// httpStatus maps a code to its HTTP status; the one place that does.
func httpStatus(c chat.Code) int {
	switch c {
	case chat.CodeBadRequest:
		return http.StatusBadRequest
	case chat.CodeInvalid:
		return http.StatusUnprocessableEntity
	case chat.CodeUnauthenticated:
		return http.StatusUnauthorized
	case chat.CodeForbidden:
		return http.StatusForbidden
	case chat.CodeNotFound:
		return http.StatusNotFound
	case chat.CodeConflict:
		return http.StatusConflict
	case chat.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case chat.CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case chat.CodeRateLimited:
		return http.StatusTooManyRequests
	case chat.CodeUnavailable, chat.CodeNotConfigured, chat.CodeOverloaded:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// logged reports whether a refusal is the server's fault, worth an error in
// the log: not a feature left unconfigured, nor overload, which refuses by
// design (pgbus.Backlog logs when it starts and stops).
func logged(c chat.Code) bool {
	return httpStatus(c) >= 500 && c != chat.CodeNotConfigured && c != chat.CodeOverloaded
}

// retryAfter is the Retry-After header of a refusal, and whether it has
// one: a refusal with a retry hint, and every 429. Whole seconds, rounded up
// (the header has no finer unit), at least 1.
func retryAfter(e *chat.Error) (string, bool) {
	if e.RetryAfter <= 0 && httpStatus(e.Code) != http.StatusTooManyRequests {
		return "", false
	}
	return strconv.Itoa(max(1, int((e.RetryAfter+time.Second-1)/time.Second))), true
}
