package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestPreviousSecretOverlap: during a rotation tokens signed with either
// secret are accepted; the previous one's until the end of the overlap,
// and never past it, however long their exp.
func TestPreviousSecretOverlap(t *testing.T) {
	current := []byte("current-secret-0123456789abcdef")
	previous := []byte("previous-secret-0123456789abcdef")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	until := now.Add(time.Hour)
	v, err := NewVerifier(current, WithPreviousSecret(previous, until))
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	v.now = func() time.Time { return clock }
	claims := func(user string, exp time.Time) jwt.MapClaims { return jwt.MapClaims{"sub": user, "exp": exp.Unix()} }

	long := now.Add(24 * time.Hour)
	byCurrent := sign(t, jwt.SigningMethodHS256, current, claims("1", long))
	byPrevious := sign(t, jwt.SigningMethodHS256, previous, claims("2", long))
	shortByPrevious := sign(t, jwt.SigningMethodHS256, previous, claims("3", now.Add(10*time.Minute)))
	expiredByPrevious := sign(t, jwt.SigningMethodHS256, previous, claims("4", now.Add(-time.Hour)))
	byNeither := sign(t, jwt.SigningMethodHS256, []byte("unknown-secret-0123456789abcdef"), claims("5", long))

	for _, c := range []struct {
		name      string
		at        time.Time
		token     string
		user      int64
		until     time.Time
		refusedBy string // part of the reason; "" = accepted
	}{
		{"current secret", now, byCurrent, 1, long.Add(DefaultLeeway), ""},
		{"previous secret within the overlap", now, byPrevious, 2, until, ""},
		{"previous secret, token ending first", now, shortByPrevious, 3, now.Add(10*time.Minute + DefaultLeeway), ""},
		{"previous secret, expired token", now, expiredByPrevious, 0, time.Time{}, "expired"},
		{"neither secret", now, byNeither, 0, time.Time{}, "signature"},
		{"previous secret a moment before the end", until.Add(-time.Second), byPrevious, 2, until, ""},
		{"previous secret at the end", until, byPrevious, 0, time.Time{}, "signature"},
		{"previous secret after the end", until.Add(time.Hour), byPrevious, 0, time.Time{}, "signature"},
		{"current secret after the end", until.Add(time.Hour), byCurrent, 1, long.Add(DefaultLeeway), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock = c.at
			got, err := v.Verify(t.Context(), c.token)
			if c.refusedBy != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), c.refusedBy) {
					t.Fatalf("got %+v, %v; want a refusal naming %q", got, err, c.refusedBy)
				}
				return
			}
			if err != nil || got.UserID != c.user || !got.ValidUntil.Equal(c.until) {
				t.Fatalf("got %+v, %v; want user %d valid until %v", got, err, c.user, c.until)
			}
		})
	}
}

func TestPreviousSecretRefused(t *testing.T) {
	current := []byte("current-secret-0123456789abcdef")
	later := time.Now().Add(time.Hour)
	for name, c := range map[string]struct {
		opt  Option
		want string
	}{
		"short":        {WithPreviousSecret([]byte("short"), later), "16 bytes"},
		"same":         {WithPreviousSecret(current, later), "is the current one"},
		"without end":  {WithPreviousSecret([]byte("previous-secret-0123456789abcdef"), time.Time{}), "end of its overlap"},
		"with key set": {WithPreviousSecret([]byte("previous-secret-0123456789abcdef"), later), "not a key set"},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			if name == "with key set" {
				ks, kerr := NewKeySet(KeySetConfig{URL: "https://issuer.example.com/jwks.json"})
				if kerr != nil {
					t.Fatal(kerr)
				}
				_, err = NewJWKSVerifier(ks, WithIssuer("i"), WithAudience("a"), c.opt)
			} else {
				_, err = NewVerifier(current, c.opt)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}
