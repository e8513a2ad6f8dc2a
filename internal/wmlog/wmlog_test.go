package wmlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/parleychat/parley/internal/wmlog"
)

func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	l := wmlog.New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))).
		With(watermill.LogFields{"topic": "fanout"})
	l.Info("Starting handler", nil)
	l.Error("could not commit tx for querying message", fmt.Errorf("commit: %w", context.Canceled), nil)
	if buf.Len() != 0 {
		t.Fatalf("life-cycle and shutdown records reached INFO:\n%s", buf.String())
	}
	l.Error("querying queue failed", errors.New("connection refused"), watermill.LogFields{"n": 1})
	out := buf.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "connection refused") || !strings.Contains(out, "topic=fanout") {
		t.Fatalf("a real error lost its level or fields: %q", out)
	}
}
