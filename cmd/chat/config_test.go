package main

import (
	"slices"
	"strings"
	"testing"
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
