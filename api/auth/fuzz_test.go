package auth

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerifier feeds arbitrary tokens to the verifier, which reads the
// Authorization header and the ?token= of every connection. Properties: no
// panic; every refusal wraps ErrUnauthenticated (a 401, never a 500); an
// accepted token names a positive user.
func FuzzVerifier(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, user := range []int64{1, 42, 1 << 53} {
		tok, err := Issue(secret, user, time.Hour, now)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.")
	v, err := NewVerifier(secret)
	if err != nil {
		f.Fatal(err)
	}
	v.now = func() time.Time { return now }
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.UserID(t.Context(), token)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("refusal is not ErrUnauthenticated: %v", err)
			}
			return
		}
		if id <= 0 {
			t.Fatalf("accepted a token for user %d", id)
		}
	})
}

// FuzzIssueVerify: a token issued for any user verifies as that user while
// it is valid, and not once expired.
func FuzzIssueVerify(f *testing.F) {
	f.Add(int64(1), int64(3600))
	f.Add(int64(1<<62), int64(1))
	f.Add(int64(0), int64(60))
	f.Add(int64(-5), int64(60))
	secret := []byte("fuzz-secret-0123456789")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v, err := NewVerifier(secret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, user, ttlSeconds int64) {
		ttl := time.Duration(ttlSeconds%(48*3600)) * time.Second
		if ttl <= 0 {
			ttl = time.Second
		}
		tok, err := Issue(secret, user, ttl, now)
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		v.now = func() time.Time { return now }
		id, err := v.UserID(t.Context(), tok)
		switch {
		case user <= 0 && err == nil:
			t.Fatalf("a token for user %d was accepted as %d", user, id)
		case user > 0 && (err != nil || id != user):
			t.Fatalf("a token for user %d verified as %d, %v", user, id, err)
		}
		v.now = func() time.Time { return now.Add(ttl + v.leeway + time.Second) }
		if _, err := v.UserID(t.Context(), tok); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("an expired token was not refused: %v", err)
		}
	})
}
