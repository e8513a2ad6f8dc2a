package api

import (
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

// authenticate returns the user a token was issued to.
func authenticate(v *auth.Verifier, token string) (int64, error) {
	user, err := v.UserID(token)
	if err != nil {
		return 0, &chat.Error{Code: chat.CodeUnauthenticated, Message: "invalid or expired token", Err: err}
	}
	return user, nil
}
