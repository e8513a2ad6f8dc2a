package main

import (
	"strings"
	"testing"
	"time"
)

// TestJWTConfiguration: the rotation overlap and the key set are validated
// at start-up, each refusal naming its variable.
func TestJWTConfiguration(t *testing.T) {
	const (
		current  = "Zq8v!Lr2#Tn5@Kx9$Wm3%Hb7^Gd4&Fs1"
		previous = "Pq7w!Mr3#Yn6@Jx8$Vm2%Gb5^Hd9&Ks4"
		jwks     = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example/.well-known/jwks.json"
	)
	later := time.Now().Add(6 * time.Hour).UTC().Truncate(time.Second)
	rotation := map[string]string{"JWT_SECRET": current, "CHAT_JWT_PREVIOUS_SECRET": previous, "CHAT_JWT_PREVIOUS_SECRET_UNTIL": later.Format(time.RFC3339)}
	keySet := map[string]string{"CHAT_JWKS_URL": jwks, "CHAT_JWT_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example", "CHAT_JWT_AUDIENCE": "client-id"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	t.Run("overlap", func(t *testing.T) {
		cfg, err := loadConfig(vars(rotation), false, true)
		if err != nil || cfg.JWT.PreviousSecret != previous || !cfg.JWT.PreviousUntil.Equal(later) {
			t.Fatalf("got %+v, %v", cfg.JWT, err)
		}
		v, err := cfg.verifier(t.Context(), nil)
		if err != nil || v == nil {
			t.Fatalf("verifier: %v", err)
		}
	})
	t.Run("overlap over", func(t *testing.T) {
		cfg, err := loadConfig(vars(with(rotation, "CHAT_JWT_PREVIOUS_SECRET_UNTIL", time.Now().Add(-time.Hour).Format(time.RFC3339))), false, true)
		if err != nil || cfg.JWT.PreviousSecret != "" {
			t.Fatalf("an ended overlap: %+v, %v; want the previous secret dropped", cfg.JWT, err)
		}
	})
	t.Run("worker", func(t *testing.T) {
		// Workers get the stack's variables but no secret.
		if _, err := loadConfig(vars(map[string]string{"CHAT_JWT_PREVIOUS_SECRET_UNTIL": later.Format(time.RFC3339)}), false, false); err != nil {
			t.Fatalf("a worker with the overlap's end but no secret: %v", err)
		}
	})
	t.Run("key set", func(t *testing.T) {
		cfg, err := loadConfig(vars(with(keySet, "CHAT_JWT_USER_ID_CLAIM", "custom:user_id")), false, true)
		if err != nil || cfg.JWTSecret != "" || cfg.JWT.JWKSURL != jwks || cfg.JWT.UserIDClaim != "custom:user_id" ||
			cfg.JWT.JWKSRefresh != time.Hour || cfg.JWT.JWKSMinRefresh != time.Minute || cfg.JWT.JWKSTimeout != 5*time.Second {
			t.Fatalf("got %+v, %v", cfg.JWT, err)
		}
		if !cfg.verifiesTokens() {
			t.Fatal("a key set configuration verifies no tokens")
		}
		// chat dev with a key set uses it, not the development secret.
		if cfg, err := loadConfig(vars(keySet), true, true); err != nil || cfg.DevSecretInUse || cfg.JWTSecret != "" {
			t.Fatalf("chat dev with a key set: %+v, %v", cfg, err)
		}
	})

	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"previous without end":       {with(rotation, "CHAT_JWT_PREVIOUS_SECRET_UNTIL", ""), "needs CHAT_JWT_PREVIOUS_SECRET_UNTIL"},
		"end not RFC 3339":           {with(rotation, "CHAT_JWT_PREVIOUS_SECRET_UNTIL", "6h"), "CHAT_JWT_PREVIOUS_SECRET_UNTIL=\"6h\": want an RFC 3339 time"},
		"end too far":                {with(rotation, "CHAT_JWT_PREVIOUS_SECRET_UNTIL", time.Now().Add(60*24*time.Hour).Format(time.RFC3339)), "at most 30 days"},
		"end without previous":       {with(rotation, "CHAT_JWT_PREVIOUS_SECRET", ""), "CHAT_JWT_PREVIOUS_SECRET is not"},
		"previous is current":        {with(rotation, "CHAT_JWT_PREVIOUS_SECRET", current), "CHAT_JWT_PREVIOUS_SECRET is JWT_SECRET"},
		"weak previous":              {with(rotation, "CHAT_JWT_PREVIOUS_SECRET", strings.Repeat("ab", 20)), "CHAT_JWT_PREVIOUS_SECRET: JWT secret must hold"},
		"previous is the dev secret": {with(rotation, "CHAT_JWT_PREVIOUS_SECRET", devJWTSecret), "CHAT_JWT_PREVIOUS_SECRET is the published development secret"},
		"key set and secret":         {with(keySet, "JWT_SECRET", current), "JWT_SECRET and CHAT_JWKS_URL are both set"},
		"key set and previous":       {with(keySet, "CHAT_JWT_PREVIOUS_SECRET_UNTIL", later.Format(time.RFC3339)), "cannot be used with CHAT_JWKS_URL"},
		"key set over http":          {with(keySet, "CHAT_JWKS_URL", "http://issuer.example.com/jwks.json"), "CHAT_JWKS_URL: \"http://issuer.example.com/jwks.json\": keys fetched over plain http"},
		"key set without issuer":     {with(keySet, "CHAT_JWT_ISSUER", ""), "CHAT_JWT_ISSUER is required"},
		"key set without audience":   {with(keySet, "CHAT_JWT_AUDIENCE", ""), "CHAT_JWT_AUDIENCE is required"},
		"bad refresh":                {with(keySet, "CHAT_JWKS_REFRESH_INTERVAL", "soon"), "CHAT_JWKS_REFRESH_INTERVAL"},
		"min refresh past refresh":   {with(keySet, "CHAT_JWKS_MIN_REFRESH_INTERVAL", "2h"), "CHAT_JWKS_MIN_REFRESH_INTERVAL=2h0m0s is longer"},
		"no way to verify":           {map[string]string{}, "JWT_SECRET is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(vars(c.env), false, true)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}
