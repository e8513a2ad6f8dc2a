package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/chat"
)

func TestS3ListenerAndOrigins(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		addr    string
		origins []string
		err     string // a part of the error; empty: none
	}{
		{"defaults", nil, "127.0.0.1:8083", []string{"http://127.0.0.1:8080"}, ""},
		{"localhost", map[string]string{"CHAT_S3_ADDR": "localhost:9000"}, "localhost:9000", []string{"http://127.0.0.1:8080"}, ""},
		{"all interfaces refused", map[string]string{"CHAT_S3_ADDR": "0.0.0.0:8083"}, "", nil, "CHAT_S3_PUBLIC=true"},
		{"LAN address refused", map[string]string{"CHAT_S3_ADDR": "192.168.1.20:8083"}, "", nil, "must be a loopback address"},
		{"public by choice", map[string]string{"CHAT_S3_ADDR": "0.0.0.0:8083", "CHAT_S3_PUBLIC": "true"}, "0.0.0.0:8083", []string{"http://127.0.0.1:8080"}, ""},
		{"public not a boolean", map[string]string{"CHAT_S3_PUBLIC": "yes please"}, "", nil, "CHAT_S3_PUBLIC"},
		{"origin follows the API", map[string]string{"CHAT_HTTP_ADDR": "0.0.0.0:9090"}, "127.0.0.1:8083", []string{"http://127.0.0.1:9090"}, ""},
		{"origins listed", map[string]string{"CHAT_S3_CORS_ORIGINS": "https://chat.example.com, http://localhost:3000"}, "127.0.0.1:8083",
			[]string{"https://chat.example.com", "http://localhost:3000"}, ""},
		{"wildcard refused", map[string]string{"CHAT_S3_CORS_ORIGINS": "*"}, "", nil, "CHAT_S3_CORS_ORIGINS"},
		{"path refused", map[string]string{"CHAT_S3_CORS_ORIGINS": "https://chat.example.com/app"}, "", nil, "not an origin"},
		{"scheme required", map[string]string{"CHAT_S3_CORS_ORIGINS": "chat.example.com"}, "", nil, "not an origin"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return tt.env[k] }, true, false)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("loadConfig: %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.S3Addr != tt.addr || !slices.Equal(cfg.S3CORSOrigins, tt.origins) {
				t.Fatalf("S3Addr %q, origins %q; want %q, %q", cfg.S3Addr, cfg.S3CORSOrigins, tt.addr, tt.origins)
			}
		})
	}
}

// vars is a getenv over fixed variables.
func vars(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// A server that verifies real users' tokens refuses, at start-up and
// naming the variable, a secret anyone knows or can guess; chat dev may run
// with the published development secret.
func TestWeakJWTSecretsAreRefusedAtStartup(t *testing.T) {
	for name, secret := range map[string]string{
		"the development secret": devJWTSecret,
		"16 spaces":              strings.Repeat(" ", 16),
		"too short":              "0123456789abcdef0123",
		"all one character":      strings.Repeat("x", 64),
		"two characters":         strings.Repeat("ab", 32),
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"api"}, vars(map[string]string{"JWT_SECRET": secret}), &bytes.Buffer{}, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), "invalid configuration") || !strings.Contains(stderr.String(), "JWT_SECRET") {
				t.Fatalf("chat api with %s: exit %d, stderr %q; want exit 2 naming JWT_SECRET", name, code, stderr.String())
			}
		})
	}
	for _, dev := range []bool{true, false} {
		secret := "Zq8v!Lr2#Tn5@Kx9$Wm3%Hb7^Gd4&Fs1"
		if dev {
			secret = devJWTSecret
		}
		if _, err := loadConfig(vars(map[string]string{"JWT_SECRET": secret}), dev, true); err != nil {
			t.Errorf("dev=%v: a fine secret refused: %v", dev, err)
		}
	}
	if cfg, err := loadConfig(vars(nil), true, true); err != nil || cfg.JWTSecret != devJWTSecret {
		t.Errorf("chat dev without JWT_SECRET: %v", err)
	}
}

// Each kind of write has its limit from CHAT_RATE_<KIND>, documented
// defaults otherwise; a bad value is refused naming the variable.
func TestRateConfiguration(t *testing.T) {
	cfg, err := loadConfig(vars(map[string]string{
		"CHAT_RATE_TYPING":       "5/s",
		"CHAT_RATE_CONVERSATION": "30/1h,10",
		"CHAT_RATE_PING":         "0",
		"CHAT_RATE_SEND":         "100/2s,7",
	}), true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := chat.DefaultRates()
	want[chat.WriteTyping] = chat.Rate{PerSecond: 5, Burst: 5}
	want[chat.WriteConversation] = chat.Rate{PerSecond: 30.0 / 3600, Burst: 10}
	want[chat.WritePing] = chat.Rate{}
	want[chat.WriteSend] = chat.Rate{PerSecond: 50, Burst: 7}
	if cfg.Rates != want {
		t.Fatalf("rates %v, want %v", cfg.Rates, want)
	}
	if _, err := loadConfig(vars(map[string]string{"CHAT_SEND_RATE": "5"}), true, true); err == nil || !strings.Contains(err.Error(), "CHAT_RATE_SEND") {
		t.Errorf("the old CHAT_SEND_RATE: %v, want an error pointing to CHAT_RATE_SEND", err)
	}
	for _, bad := range []string{"5", "5/", "x/s", "0/s", "-1/s", "5/0s", "5/s,0", "5/s,x", "5/fortnight"} {
		_, err := loadConfig(vars(map[string]string{"CHAT_RATE_UPLOAD": bad}), true, true)
		if err == nil || !strings.Contains(err.Error(), "CHAT_RATE_UPLOAD") {
			t.Errorf("CHAT_RATE_UPLOAD=%q: %v, want an error naming it", bad, err)
		}
	}
}

func TestMetricsListener(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		addr string
		set  bool
		err  string // a part of the error; empty: none
	}{
		{"default", nil, "127.0.0.1:9464", false, ""},
		{"off", map[string]string{"CHAT_METRICS_ADDR": "off"}, "", false, ""},
		{"chosen", map[string]string{"CHAT_METRICS_ADDR": "localhost:9100"}, "localhost:9100", true, ""},
		{"all interfaces refused", map[string]string{"CHAT_METRICS_ADDR": "0.0.0.0:9464"}, "", false, "CHAT_METRICS_PUBLIC=true"},
		{"public by choice", map[string]string{"CHAT_METRICS_ADDR": "0.0.0.0:9464", "CHAT_METRICS_PUBLIC": "true"}, "0.0.0.0:9464", true, ""},
		{"not an address", map[string]string{"CHAT_METRICS_ADDR": "9464"}, "", false, "CHAT_METRICS_ADDR"},
		{"public not a boolean", map[string]string{"CHAT_METRICS_PUBLIC": "sure"}, "", false, "CHAT_METRICS_PUBLIC"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(vars(tt.env), true, false)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("loadConfig: %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MetricsAddr != tt.addr || cfg.MetricsAddrSet != tt.set {
				t.Fatalf("MetricsAddr %q (set %v), want %q (set %v)", cfg.MetricsAddr, cfg.MetricsAddrSet, tt.addr, tt.set)
			}
		})
	}
}

func TestChangeWindowsConfiguration(t *testing.T) {
	cfg, err := loadConfig(vars(nil), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.EditWindow != 15*time.Minute || cfg.UnsendWindow != time.Hour {
		t.Fatalf("defaults: edit %s, unsend %s; want 15m and 1h", cfg.EditWindow, cfg.UnsendWindow)
	}
	cfg, err = loadConfig(vars(map[string]string{"CHAT_EDIT_WINDOW": "2m", "CHAT_UNSEND_WINDOW": "24h"}), true, true)
	if err != nil || cfg.EditWindow != 2*time.Minute || cfg.UnsendWindow != 24*time.Hour {
		t.Fatalf("set: %v, edit %s, unsend %s", err, cfg.EditWindow, cfg.UnsendWindow)
	}
	for _, name := range []string{"CHAT_EDIT_WINDOW", "CHAT_UNSEND_WINDOW"} {
		for _, bad := range []string{"0", "-1m", "soon"} {
			if _, err := loadConfig(vars(map[string]string{name: bad}), true, true); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: %v, want an error naming it", name, bad, err)
			}
		}
	}
}

func TestWorkerBatchSizeConfiguration(t *testing.T) {
	cfg, err := loadConfig(vars(nil), true, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WorkerBatch != 250 {
		t.Fatalf("default batch size %d, want 250", cfg.WorkerBatch)
	}
	cfg, err = loadConfig(vars(map[string]string{"CHAT_WORKER_BATCH_SIZE": "40"}), true, true)
	if err != nil || cfg.WorkerBatch != 40 {
		t.Fatalf("set 40: %v, got %d", err, cfg.WorkerBatch)
	}
	for _, bad := range []string{"0", "-3", "1001", "many"} {
		if _, err := loadConfig(vars(map[string]string{"CHAT_WORKER_BATCH_SIZE": bad}), true, true); err == nil || !strings.Contains(err.Error(), "CHAT_WORKER_BATCH_SIZE") {
			t.Errorf("CHAT_WORKER_BATCH_SIZE=%q: %v, want an error naming it", bad, err)
		}
	}
}
