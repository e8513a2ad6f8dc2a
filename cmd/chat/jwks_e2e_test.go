package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/api/auth/authtest"
)

// TestDevVerifiesKeySetTokens runs `chat dev` with CHAT_JWKS_URL pointing
// at a local JWKS server and drives it with real WebSocket and HTTP
// clients holding RS256 and ES256 tokens: they chat; HS256 tokens, even
// the development secret's, are refused; a socket is closed with 4001
// when its key-set token expires; chat token refuses to mint tokens the
// server would refuse.
func TestDevVerifiesKeySetTokens(t *testing.T) {
	const (
		issuer   = "https://issuer.example.com/realms/parley"
		audience = "parley-app"
	)
	idp := authtest.NewIssuer(t)
	rsaKey, ecKey := authtest.NewRSAKey(t, "rsa-2026"), authtest.NewECKey(t, "ec-2026")
	idp.PublishKeys(rsaKey, ecKey)
	sign := func(user int64, key *authtest.Key, exp time.Time) string {
		return authtest.Sign(t, key, jwt.MapClaims{
			"iss": issuer, "aud": audience, "sub": "d6f1c6b0-user-" + strconv.FormatInt(user, 10),
			"app_user_id": user, "exp": exp.Unix(),
		})
	}
	e := newEnv(t)
	e.extra = append(e.extra, "JWT_SECRET=", // unset: the harness sets one
		"CHAT_JWKS_URL="+idp.URL, "CHAT_JWT_ISSUER="+issuer, "CHAT_JWT_AUDIENCE="+audience, "CHAT_JWT_USER_ID_CLAIM=app_user_id")
	e.tokenFor = func(user int64) string {
		key := rsaKey
		if user%2 == 0 {
			key = ecKey
		}
		return sign(user, key, time.Now().Add(time.Hour))
	}
	e.waitHTTP(e.start("dev"))

	a, b := e.dial(1), e.dial(2) // RS256, ES256
	a.send(map[string]any{"action": "sendMessage", "data": map[string]any{"recipientId": 2, "contentType": "text", "textContent": "signed by the provider"}})
	ack := a.expect("acknowledgment", nil)
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == ack["messageId"] })
	rest := e.send(2, 1, "over rest")
	a.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == rest.ID })

	for name, token := range map[string]string{
		"HS256 with the development secret": userTokenWith(t, devJWTSecret),
		"HS256 with the test secret":        userToken(t, 1),
		"unknown kid":                       sign(1, authtest.NewECKey(t, "ec-unknown"), time.Now().Add(time.Hour)),
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.http+"/api/v1/chat/conversations", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("REST with %s: status %d, want 401", name, resp.StatusCode)
		}
		_, resp, err = websocket.DefaultDialer.Dial("ws://"+e.http+"/ws?token="+token, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("WebSocket with %s: %v, want 401", name, err)
		}
	}

	// Valid for about 2 s more, with the verifier's 30 s of leeway.
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+e.http+"/ws?token="+sign(3, ecKey, time.Now().Add(-28*time.Second)), nil)
	if err != nil {
		t.Fatalf("dial with a key-set token about to expire: %v", err)
	}
	resp.Body.Close()
	defer conn.Close()
	expectExpiryClose(t, conn)

	if code := runCmd(t, e, "token", "--user", "1"); code == 0 {
		t.Error("chat token minted an HS256 token for a server verifying against a key set")
	}
}

// userTokenWith is an hour-long HS256 token for user 1 signed with secret.
func userTokenWith(t *testing.T, secret string) string {
	t.Helper()
	tok, err := auth.Issue([]byte(secret), 1, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
