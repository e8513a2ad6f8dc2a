package dynamostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/connstore"
	"github.com/parleychat/parley/internal/connstore/dynamostore/dynalitetest"
	"github.com/parleychat/parley/internal/connstore/storetest"
)

// newClient starts a dynalite for the calling test.
func newClient(t *testing.T) *dynamodb.Client {
	t.Helper()
	client, err := NewClient(t.Context(), awsconf.Options{Endpoint: dynalitetest.Start(t)})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return client
}

// newTable creates a store over a table of its own.
func newTable(t *testing.T, client *dynamodb.Client, opts ...Option) *Store {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	s := New(client, "ws_connections_"+hex.EncodeToString(b[:]), opts...)
	if err := s.CreateTable(t.Context()); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	client := newClient(t)
	t.Run("DefaultPages", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) connstore.Store { return newTable(t, client) })
	})
	t.Run("SmallPages", func(t *testing.T) {
		// Limit counts items before the expiry filter, so pages can come
		// back empty yet not be the last one.
		storetest.Run(t, func(t *testing.T) connstore.Store {
			s := newTable(t, client)
			s.pageSize = 3
			return s
		})
	})
}

func TestItemLayout(t *testing.T) {
	client := newClient(t)
	s := newTable(t, client)
	ctx := t.Context()
	c := connstore.Connection{
		ID:          "abc123=",
		UserID:      42,
		ConnectedAt: time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600)),
		LastPingAt:  time.Date(2030, 1, 2, 3, 5, 0, 0, time.UTC),
		ExpiresAt:   time.Date(2030, 1, 2, 5, 4, 5, 1, time.UTC),
		Gateway:     "http://127.0.0.1:8081",
	}
	if err := s.Put(ctx, c); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got := rawItem(t, s, c.ID)
	want := map[string]types.AttributeValue{
		"connectionId": &types.AttributeValueMemberS{Value: "abc123="},
		"userId":       &types.AttributeValueMemberN{Value: "42"},
		"connectedAt":  &types.AttributeValueMemberS{Value: "2030-01-02T02:04:05.123456789Z"},
		"lastPingAt":   &types.AttributeValueMemberS{Value: "2030-01-02T03:05:00Z"},
		// Rounded up: 1 ns past the second must not expire early.
		"expiresAt": &types.AttributeValueMemberN{Value: "1893560646"},
		"gateway":   &types.AttributeValueMemberS{Value: "http://127.0.0.1:8081"},
	}
	assertItem(t, got, want)

	// A whole-second expiry is kept exactly.
	exp := time.Date(2030, 1, 2, 6, 0, 0, 0, time.UTC)
	if err := s.Touch(ctx, c.ID, c.LastPingAt, exp); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	want["expiresAt"] = &types.AttributeValueMemberN{Value: "1893564000"}
	assertItem(t, rawItem(t, s, c.ID), want)

	// Feed mode is a BOOL, written only when set (absent above).
	c.Feed = true
	if err := s.Put(ctx, c); err != nil {
		t.Fatalf("Put in feed mode: %v", err)
	}
	want["expiresAt"] = &types.AttributeValueMemberN{Value: "1893560646"}
	want["feed"] = &types.AttributeValueMemberBOOL{Value: true}
	assertItem(t, rawItem(t, s, c.ID), want)
}

func TestByUserExpiryBoundary(t *testing.T) {
	client := newClient(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := now
	s := newTable(t, client, WithClock(func() time.Time { return clock }))
	ctx := t.Context()
	for id, exp := range map[string]time.Time{
		"past":   now.Add(-time.Second),
		"now":    now, // expires exactly now: hidden, as in pgstore
		"future": now.Add(time.Second),
	} {
		err := s.Put(ctx, connstore.Connection{ID: id, UserID: 1, ConnectedAt: now, LastPingAt: now, ExpiresAt: exp})
		if err != nil {
			t.Fatalf("Put %s: %v", id, err)
		}
	}
	for _, tc := range []struct {
		clock time.Time
		want  []string
	}{
		{now.Add(-time.Second - time.Nanosecond), []string{"future", "now", "past"}},
		{now.Add(-time.Nanosecond), []string{"future", "now"}},
		{now, []string{"future"}},
		{now.Add(999 * time.Millisecond), []string{"future"}},
		{now.Add(time.Second), []string{}},
	} {
		clock = tc.clock
		list, err := s.ByUser(ctx, 1)
		if err != nil {
			t.Fatalf("ByUser: %v", err)
		}
		got := []string{}
		for _, c := range list {
			got = append(got, c.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("ByUser at %v = %v, want %v", tc.clock.Format(time.RFC3339Nano), got, tc.want)
		}
	}
}

func TestReadsZonelessTimes(t *testing.T) {
	client := newClient(t)
	s := newTable(t, client)
	ctx := t.Context()
	_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			"connectionId": &types.AttributeValueMemberS{Value: "py"},
			"userId":       &types.AttributeValueMemberN{Value: "9"},
			"connectedAt":  &types.AttributeValueMemberS{Value: "2030-01-02T03:04:05.123456"},
			"lastPingAt":   &types.AttributeValueMemberS{Value: "2030-01-02T03:04:06"},
			"expiresAt":    &types.AttributeValueMemberN{Value: "1893560645"},
		},
	})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	got, err := s.Get(ctx, "py")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC); !got.ConnectedAt.Equal(want) {
		t.Errorf("ConnectedAt = %v, want %v", got.ConnectedAt, want)
	}
	if want := time.Date(2030, 1, 2, 3, 4, 6, 0, time.UTC); !got.LastPingAt.Equal(want) {
		t.Errorf("LastPingAt = %v, want %v", got.LastPingAt, want)
	}
}

func TestMalformedItem(t *testing.T) {
	client := newClient(t)
	s := newTable(t, client)
	ctx := t.Context()
	_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			"connectionId": &types.AttributeValueMemberS{Value: "bad"},
			"userId":       &types.AttributeValueMemberN{Value: "9"},
			"connectedAt":  &types.AttributeValueMemberS{Value: "yesterday"},
		},
	})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	if _, err := s.Get(ctx, "bad"); err == nil || errors.Is(err, connstore.ErrNotFound) {
		t.Fatalf("Get malformed item: err = %v, want a decoding error", err)
	}
}

func TestCreateTableTwice(t *testing.T) {
	client := newClient(t)
	s := newTable(t, client)
	if err := s.CreateTable(t.Context()); err != nil {
		t.Fatalf("second CreateTable: %v", err)
	}
}

func TestNewClientRejectsBadEndpoint(t *testing.T) {
	for _, ep := range []string{"127.0.0.1:4567", "ftp://127.0.0.1", "http://"} {
		if _, err := NewClient(context.Background(), awsconf.Options{Endpoint: ep}); err == nil {
			t.Errorf("NewClient(%q): want an error", ep)
		}
	}
}

func rawItem(t *testing.T, s *Store, id string) map[string]types.AttributeValue {
	t.Helper()
	out, err := s.api.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: key(id)})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	return out.Item
}

func assertItem(t *testing.T, got, want map[string]types.AttributeValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("item has %d attributes, want %d: %v", len(got), len(want), got)
	}
	for name, w := range want {
		g := got[name]
		switch w := w.(type) {
		case *types.AttributeValueMemberS:
			if g, ok := g.(*types.AttributeValueMemberS); !ok || g.Value != w.Value {
				t.Errorf("%s = %#v, want S %q", name, got[name], w.Value)
			}
		case *types.AttributeValueMemberN:
			if g, ok := g.(*types.AttributeValueMemberN); !ok || g.Value != w.Value {
				t.Errorf("%s = %#v, want N %q", name, got[name], w.Value)
			}
		case *types.AttributeValueMemberBOOL:
			if g, ok := g.(*types.AttributeValueMemberBOOL); !ok || g.Value != w.Value {
				t.Errorf("%s = %#v, want BOOL %v", name, got[name], w.Value)
			}
		}
	}
}
