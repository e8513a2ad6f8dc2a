package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/lambdafn"
)

// takesTokens: the functions that verify bearer tokens.
var takesTokens = map[string]bool{lambdafn.API: true, lambdafn.WSConnect: true, lambdafn.WSDisconnect: true, lambdafn.WSDefault: true}

func vars(tp *tmpl, id string) map[string]any {
	return tp.Resources[id]["Properties"].(map[string]any)["Environment"].(map[string]any)["Variables"].(map[string]any)
}

// TestTokenSettingsReachTheEdge: a stage's key set, issuer, audience and
// user id claim reach every function that verifies tokens (and no worker),
// those functions then may not read the HS256 secret, and the OTLP
// endpoint reaches every function.
func TestTokenSettingsReachTheEdge(t *testing.T) {
	tp, err := newTmpl(map[string]any{
		"jwksUrl": "https://auth.example/.well-known/jwks.json", "jwtIssuer": "https://auth.example/",
		"jwtAudience": "parley", "jwtUserIdClaim": "uid", "otlpEndpoint": "http://collector.internal:4318",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"CHAT_JWKS_URL": "https://auth.example/.well-known/jwks.json", "CHAT_JWT_ISSUER": "https://auth.example/",
		"CHAT_JWT_AUDIENCE": "parley", "CHAT_JWT_USER_ID_CLAIM": "uid",
	}
	fns := tp.functionsByHandler(t)
	for h, id := range fns {
		v := vars(tp, id)
		for name, value := range want {
			if got, ok := v[name]; ok != takesTokens[h] || (ok && got != value) {
				t.Errorf("%s: %s = %v (set: %v), want set only where tokens are verified", h, name, got, ok)
			}
		}
		if _, ok := v["CHAT_JWT_PREVIOUS_SECRET_UNTIL"]; ok {
			t.Errorf("%s: CHAT_JWT_PREVIOUS_SECRET_UNTIL without jwtPreviousSecretUntil", h)
		}
		if v["OTEL_EXPORTER_OTLP_ENDPOINT"] != "http://collector.internal:4318" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %v", h, v["OTEL_EXPORTER_OTLP_ENDPOINT"])
		}
		if reads := fmt.Sprint(tp.roleActions(t, id)["secretsmanager:GetSecretValue"]); strings.Contains(reads, "JwtSecret") {
			t.Errorf("%s reads the JWT secret although tokens are verified against a key set", h)
		}
	}
	if len(fns) == 0 {
		t.Fatal("no functions")
	}
}

// TestPreviousSecretUntil: a stage in a rotation hands the overlap's end to
// the functions that verify tokens, which keep reading the secret; by
// default no function has it, nor an OTLP endpoint.
func TestPreviousSecretUntil(t *testing.T) {
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	tp, err := newTmpl(map[string]any{"jwtPreviousSecretUntil": until})
	if err != nil {
		t.Fatal(err)
	}
	for h, id := range tp.functionsByHandler(t) {
		v := vars(tp, id)
		if got, ok := v["CHAT_JWT_PREVIOUS_SECRET_UNTIL"]; ok != takesTokens[h] || (ok && got != until) {
			t.Errorf("%s: CHAT_JWT_PREVIOUS_SECRET_UNTIL = %v (set: %v)", h, got, ok)
		}
		if takesTokens[h] && !strings.Contains(fmt.Sprint(tp.roleActions(t, id)["secretsmanager:GetSecretValue"]), "JwtSecret") {
			t.Errorf("%s cannot read the JWT secret", h)
		}
	}
	d := dev(t)
	for h, id := range d.functionsByHandler(t) {
		for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "CHAT_JWKS_URL", "CHAT_JWT_PREVIOUS_SECRET_UNTIL"} {
			if _, ok := vars(d, id)[name]; ok {
				t.Errorf("%s: %s set by default", h, name)
			}
		}
	}
}

func TestAuthConfigRefused(t *testing.T) {
	get := func(m map[string]any) func(string) any { return func(k string) any { return m[k] } }
	jwks := "https://auth.example/.well-known/jwks.json"
	bad := map[string]map[string]any{
		"until not RFC 3339":   {"jwtPreviousSecretUntil": "tomorrow"},
		"until too far":        {"jwtPreviousSecretUntil": time.Now().Add(40 * 24 * time.Hour).UTC().Format(time.RFC3339)},
		"until with a key set": {"jwtPreviousSecretUntil": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "jwksUrl": jwks, "jwtIssuer": "i", "jwtAudience": "a"},
		"key set over http":    {"jwksUrl": "http://auth.example/jwks.json", "jwtIssuer": "i", "jwtAudience": "a"},
		"key set, no issuer":   {"jwksUrl": jwks, "jwtAudience": "a"},
		"key set, no audience": {"jwksUrl": jwks, "jwtIssuer": "i"},
		"otlp not a URL":       {"otlpEndpoint": "collector:4318"},
		// What the functions refuse at their cold start (auth.CheckJWKSURL).
		"key set with userinfo": {"jwksUrl": "https://user:pw@auth.example/jwks.json", "jwtIssuer": "i", "jwtAudience": "a"},
		"key set with fragment": {"jwksUrl": "https://auth.example/jwks.json#keys", "jwtIssuer": "i", "jwtAudience": "a"},
		"key set on loopback":   {"jwksUrl": "http://127.0.0.1/jwks.json", "jwtIssuer": "i", "jwtAudience": "a"},
		// A base URL: the functions add /v1/traces themselves.
		"otlp with the signal path":  {"otlpEndpoint": "http://collector.internal:4318/v1/traces"},
		"otlp with the signal path/": {"otlpEndpoint": "https://collector.internal/otlp/v1/traces/"},
	}
	for name, m := range bad {
		if _, err := ParseConfig(get(m)); err == nil {
			t.Errorf("%s: accepted %v", name, m)
		}
	}
}
