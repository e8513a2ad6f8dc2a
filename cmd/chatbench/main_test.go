package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestTxPerMessage(t *testing.T) {
	for _, c := range []struct {
		name                string
		before, after, sent int64
		want                float64
		wantErr             bool
	}{
		// The first reading's own transaction is not the chat's.
		{"one per message", 100, 1101, 1000, 1.0, false},
		{"a quarter", 0, 251, 1000, 0.25, false},
		{"nothing but the reading", 7, 8, 10, 0, false},
		{"nothing sent", 0, 10, 0, 0, true},
		{"statistics reset", 500, 3, 10, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := txPerMessage(c.before, c.after, c.sent)
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
			if math.Abs(got-c.want) > 1e-9 {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestOnlyLoopbackTargets(t *testing.T) {
	for _, args := range [][]string{
		{"-url", "ws://example.com/ws"},
		{"-url", "ws://10.0.0.1:8080/ws"},
		{"-db", "postgres://postgres@db.example.com:5432/chat"},
		{"-duration", "11m"},
	} {
		var out bytes.Buffer
		err := run(t.Context(), args, &out)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err %v, want a refusal naming %s", args, err, args[0])
		}
	}
}
