package api

import (
	"context"
	"strings"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/internal/chat"
)

// bearerToken takes the token out of an Authorization header value. REST
// and the WebSocket upgrade both read the header through here.
func bearerToken(header string) (string, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if token = strings.TrimSpace(token); !ok || token == "" {
		return "", chat.Errorf(chat.CodeUnauthenticated, "missing bearer token in the Authorization header")
	}
	return token, nil
}

// authenticate returns who a token was issued to, and until when.
func authenticate(ctx context.Context, v *auth.Verifier, token string) (auth.Claims, error) {
	c, err := v.Verify(ctx, token)
	if err != nil {
		return c, &chat.Error{Code: chat.CodeUnauthenticated, Message: "invalid or expired token", Err: err}
	}
	return c, nil
}
