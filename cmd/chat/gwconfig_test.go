package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestGatewayLimitsConfig: the management secret and the per-user cap come
// from the environment, are validated, and chat dev makes up a secret.
func TestGatewayLimitsConfig(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{"JWT_SECRET": "a-production-secret-of-32+-bytes-7Kq"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}

	cfg, err := loadConfig(env(), false, true)
	if err != nil || cfg.GatewaySecret != "" || cfg.WSMaxPerUser != 10 {
		t.Fatalf("defaults: secret %q, cap %d, %v; want none and 10", cfg.GatewaySecret, cfg.WSMaxPerUser, err)
	}
	a, _ := loadConfig(env(), true, true)
	b, _ := loadConfig(env(), true, true)
	if len(a.GatewaySecret) < 16 || a.GatewaySecret == b.GatewaySecret {
		t.Fatalf("chat dev secrets %q and %q: want long and unguessable", a.GatewaySecret, b.GatewaySecret)
	}
	cfg, err = loadConfig(env("CHAT_GATEWAY_ADMIN_SECRET", "s3cret-given-by-the-operator", "CHAT_WS_MAX_CONNECTIONS_PER_USER", "0"), true, true)
	if err != nil || cfg.GatewaySecret != "s3cret-given-by-the-operator" || cfg.WSMaxPerUser != 0 {
		t.Fatalf("given: secret %q, cap %d, %v", cfg.GatewaySecret, cfg.WSMaxPerUser, err)
	}
	for name, bad := range map[string][]string{
		"CHAT_GATEWAY_ADMIN_SECRET":        {"CHAT_GATEWAY_ADMIN_SECRET", "short"},
		"CHAT_WS_MAX_CONNECTIONS_PER_USER": {"CHAT_WS_MAX_CONNECTIONS_PER_USER", "-1"},
	} {
		if _, err := loadConfig(env(bad...), false, true); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming the variable", bad[0], bad[1], err)
		}
	}
}

// TestGatewayNeedsItsSecret: chat gateway refuses to start with its
// management API open to every local process.
func TestGatewayNeedsItsSecret(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chatBin, "gateway")
	cmd.Env = append(e.vars(), "CHAT_GATEWAY_ADMIN_SECRET=")
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "CHAT_GATEWAY_ADMIN_SECRET is required") {
		t.Fatalf("chat gateway without a secret: %v\n%s", err, out)
	}
}
