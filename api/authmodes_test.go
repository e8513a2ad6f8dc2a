package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/api/auth/authtest"
	"github.com/parleychat/parley/internal/pipelinetest"
)

// TestWebSocketClosedWhenPreviousSecretOverlapEnds: a socket opened with a
// token signed with the previous secret during a rotation does not outlive
// the overlap, however long its token: it is closed with 4001 then, and
// the token is refused from then on.
func TestWebSocketClosedWhenPreviousSecretOverlapEnds(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	previous := []byte("the-previous-secret-of-this-test-0123")
	// Whole milliseconds, as the gateway's expiry header carries it (a
	// configured end has whole seconds).
	until := time.Now().Add(2 * time.Second).Truncate(time.Millisecond)
	url := wsGateway(t, e, auth.WithPreviousSecret(previous, until))
	token, err := auth.Issue(previous, 1, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, resp, err := wsDial(t, url, token)
	if err != nil {
		t.Fatalf("dial with the previous secret's token during the overlap: %v", err)
	}
	resp.Body.Close()
	defer c.Close()
	if got := string(roundTrip(t, c, `{"action":"ping"}`)); got != `{"type":"pong"}` {
		t.Fatalf("ping answered %s", got)
	}
	awaitExpiryClose(t, c)
	if _, resp, err := wsDial(t, url, token); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial with the previous secret's token after the overlap: %v, want 401", err)
	}
}

// TestKeySetTokensOverRESTAndWebSocket: with a verifier over a local JWKS
// server, REST and the WebSocket upgrade both accept the provider's
// tokens and refuse HS256 ones.
func TestKeySetTokensOverRESTAndWebSocket(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	idp := authtest.NewIssuer(t)
	key := authtest.NewRSAKey(t, "rsa-1")
	idp.PublishKeys(key)
	keys, err := auth.NewKeySet(auth.KeySetConfig{URL: idp.URL})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewJWKSVerifier(keys, auth.WithIssuer("https://id.example.com"), auth.WithAudience("app"), auth.WithUserIDClaim("uid"))
	if err != nil {
		t.Fatal(err)
	}
	token := authtest.Sign(t, key, jwt.MapClaims{"iss": "https://id.example.com", "aud": "app", "uid": "1", "exp": time.Now().Add(time.Hour).Unix()})
	hs256 := wsToken(1) // signed with the secret the other tests use

	url := wsGatewayWith(t, e, wsRoutesWith(e, v))
	c := wsAcceptToken(t, url, token)
	if got := string(roundTrip(t, c, `{"action":"ping"}`)); got != `{"type":"pong"}` {
		t.Fatalf("ping answered %s", got)
	}
	if _, resp, err := wsDial(t, url, hs256); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket with an HS256 token: %v, want 401", err)
	}

	srv := httptest.NewServer(api.NewREST(e.Service, v, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	for tok, want := range map[string]int{token: http.StatusOK, hs256: http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+api.Prefix+"/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("REST: status %d, want %d", resp.StatusCode, want)
		}
	}
}
