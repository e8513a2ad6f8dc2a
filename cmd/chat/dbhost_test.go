package main

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db/dbtest"
)

func TestPointAt(t *testing.T) {
	for _, tc := range []struct {
		url, host  string
		wantHost   string
		wantPort   uint16
		wantServer string
	}{
		{"postgres://u:p@db.internal:5432/chat?sslmode=require", "proxy.example.com", "proxy.example.com", 5432, ""},
		{"postgres://u:p@db.internal:5432/chat?sslmode=verify-full", "proxy.example.com:6432", "proxy.example.com", 6432, "proxy.example.com"},
		{"postgres://u:p@a:5432,b:5433/chat?sslmode=disable", "proxy", "proxy", 5432, ""},
	} {
		c, err := pgx.ParseConfig(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if err := pointAt(c, tc.host); err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		if c.Host != tc.wantHost || c.Port != tc.wantPort || len(c.Fallbacks) != 0 || c.User != "u" || c.Database != "chat" {
			t.Errorf("%s → %s: host %s port %d fallbacks %d user %s db %s", tc.url, tc.host, c.Host, c.Port, len(c.Fallbacks), c.User, c.Database)
		}
		if tc.wantServer != "" && (c.TLSConfig == nil || c.TLSConfig.ServerName != tc.wantServer) {
			t.Errorf("%s: TLS server name not moved to %s", tc.url, tc.wantServer)
		}
	}
}

func TestDBHostValidated(t *testing.T) {
	for _, bad := range []string{"postgres://proxy:5432/chat", "proxy:notaport", "proxy:0", "a,b", ":5432", "u@proxy"} {
		_, err := loadConfig(func(k string) string { return map[string]string{"CHAT_DB_HOST": bad}[k] }, false, false)
		if err == nil || !strings.Contains(err.Error(), "CHAT_DB_HOST") {
			t.Errorf("CHAT_DB_HOST=%q: err %v, want one naming the variable", bad, err)
		}
	}
}

// TestDBHostReplacesURLHost opens the app's pool with DATABASE_URL naming a
// closed port and CHAT_DB_HOST the real server: connecting proves which won.
func TestDBHostReplacesURLHost(t *testing.T) {
	dbURL, _ := dbtest.New(t)
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(dbURL, pc.ConnConfig.Host+":", "127.0.0.2:", 1)
	wrong = strings.Replace(wrong, ":"+strconv.Itoa(int(pc.ConnConfig.Port))+"/", ":9/", 1)
	if !strings.Contains(wrong, ":9/") {
		t.Fatalf("could not move %s to a closed port: %s", dbURL, wrong)
	}
	env := map[string]string{
		"DATABASE_URL":            wrong,
		"CHAT_DB_HOST":            pc.ConnConfig.Host + ":" + strconv.Itoa(int(pc.ConnConfig.Port)),
		"CHAT_DB_CONNECT_TIMEOUT": "5s",
	}
	cfg, err := loadConfig(func(k string) string { return env[k] }, false, false)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(context.Background(), cfg, slog.New(slog.DiscardHandler), parts{db: true})
	if err != nil {
		t.Fatalf("openApp through CHAT_DB_HOST: %v", err)
	}
	defer a.Close()
	var one int
	if err := a.pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query through CHAT_DB_HOST: %v", err)
	}
}
