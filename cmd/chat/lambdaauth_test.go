package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/api/auth/authtest"
	"github.com/parleychat/parley/db/dbtest"
)

// TestLambdaJWTRotationAndKeySet runs the api function as the stack
// configures it, with secret ARNs only, against a stand-in Secrets Manager
// (an httptest server speaking its JSON protocol): during an overlap it
// reads the JWT secret's AWSPREVIOUS version too and accepts tokens signed
// with either; with CHAT_JWKS_URL it reads no JWT secret at all and
// accepts the key set's tokens.
func TestLambdaJWTRotationAndKeySet(t *testing.T) {
	dbURL, _ := dbtest.New(t)
	dbARN, jwtARN := testDBSecretARN, testJWTSecretARN
	previous := "the-previous-secret-Qw3#Er5$Ty7%Ui9"
	var asked secretRequests     // ARN and stage of each request
	var neverRotated atomic.Bool // the secret has no AWSPREVIOUS version
	sm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId, VersionStage string }
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		asked.add(in.SecretId + " " + in.VersionStage)
		versions := map[string]string{dbARN + " ": dbURL, jwtARN + " ": testSecret}
		if !neverRotated.Load() {
			versions[jwtARN+" AWSPREVIOUS"] = previous
		}
		value := versions[in.SecretId+" "+in.VersionStage]
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if value == "" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": "ResourceNotFoundException", "message": "no such version"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": "parley/test", "SecretString": value, "VersionId": "v1", "CreatedDate": 1795953600})
	}))
	t.Cleanup(sm.Close)
	useSecretsManager(t, sm.URL)
	takeAsked := asked.take
	stackEnv := lambdaStackEnv()
	start := func(t *testing.T, extra map[string]string) any {
		t.Helper()
		getenv := func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return stackEnv[k]
		}
		takeAsked()
		h, closeFn, err := lambdaHandler(context.Background(), "api", getenv, t.Output())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeFn)
		return h
	}
	status := func(t *testing.T, h any, token string) any {
		t.Helper()
		return invoke(t, h, loadEvent(t, "http_list_conversations.json", "{{token}}", token))["statusCode"]
	}
	signed := func(t *testing.T, secret string) string {
		t.Helper()
		tok, err := auth.Issue([]byte(secret), 1, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("overlap", func(t *testing.T) {
		h := start(t, map[string]string{"CHAT_JWT_PREVIOUS_SECRET_UNTIL": time.Now().Add(2 * time.Hour).Format(time.RFC3339)})
		if got := takeAsked(); !slices.Contains(got, jwtARN+" AWSPREVIOUS") || !slices.Contains(got, jwtARN+" ") {
			t.Fatalf("asked Secrets Manager for %q, want the JWT secret's current and previous versions", got)
		}
		for name, secret := range map[string]string{"current": testSecret, "previous": previous} {
			if got := status(t, h, signed(t, secret)); got != float64(200) {
				t.Errorf("token signed with the %s secret: status %v", name, got)
			}
		}
		if got := status(t, h, signed(t, "neither-secret-Zx1!Cv2@Bn3#Mq4$Wp5")); got != float64(401) {
			t.Errorf("token signed with another secret: status %v", got)
		}
	})

	t.Run("overlap with a secret never rotated", func(t *testing.T) {
		neverRotated.Store(true)
		defer neverRotated.Store(false)
		h := start(t, map[string]string{"CHAT_JWT_PREVIOUS_SECRET_UNTIL": time.Now().Add(2 * time.Hour).Format(time.RFC3339)})
		if got := takeAsked(); !slices.Contains(got, jwtARN+" AWSPREVIOUS") {
			t.Fatalf("asked Secrets Manager for %q, want the previous version tried", got)
		}
		if got := status(t, h, signed(t, testSecret)); got != float64(200) {
			t.Errorf("token signed with the current secret: status %v", got)
		}
	})

	t.Run("overlap over", func(t *testing.T) {
		h := start(t, map[string]string{"CHAT_JWT_PREVIOUS_SECRET_UNTIL": time.Now().Add(-time.Minute).Format(time.RFC3339)})
		if got := takeAsked(); slices.Contains(got, jwtARN+" AWSPREVIOUS") {
			t.Fatalf("asked Secrets Manager for %q: the previous version is not needed once the overlap is over", got)
		}
		if got := status(t, h, signed(t, previous)); got != float64(401) {
			t.Errorf("token signed with the previous secret after the overlap: status %v", got)
		}
	})

	t.Run("key set", func(t *testing.T) {
		issuer := authtest.NewIssuer(t)
		key := authtest.NewECKey(t, "k1")
		issuer.PublishKeys(key)
		h := start(t, map[string]string{
			"CHAT_JWKS_URL": issuer.URL, "CHAT_JWT_ISSUER": "https://issuer.example.com", "CHAT_JWT_AUDIENCE": "parley",
			"CHAT_JWT_USER_ID_CLAIM": "custom:user_id",
		})
		if got := takeAsked(); slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, jwtARN) }) {
			t.Fatalf("asked Secrets Manager for %q: a key set needs no JWT secret", got)
		}
		tok := authtest.Sign(t, key, jwt.MapClaims{
			"iss": "https://issuer.example.com", "aud": "parley", "sub": "3f0c8e8e-uuid", "custom:user_id": strconv.Itoa(1),
			"exp": time.Now().Add(time.Hour).Unix(),
		})
		if got := status(t, h, tok); got != float64(200) {
			t.Errorf("key set token: status %v", got)
		}
		if got := status(t, h, signed(t, testSecret)); got != float64(401) {
			t.Errorf("HS256 token where a key set is configured: status %v", got)
		}
	})
}
