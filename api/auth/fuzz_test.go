package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
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
	// Mid-rotation, with a previous secret still accepted.
	previous := []byte("fuzz-previous-secret-0123456789")
	if tok, err := Issue(previous, 7, time.Hour, now); err == nil {
		f.Add(tok)
	}
	v, err := NewVerifier(secret, WithPreviousSecret(previous, now.Add(time.Minute)))
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

// FuzzJWKS feeds arbitrary documents to the key set parser, which reads
// what the identity provider's endpoint answers. Properties: no panic;
// every key kept is an RS256 RSA key or an ES256 P-256 key under a kid.
func FuzzJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","alg":"RS256","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"o","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"e","alg":"RS256"},{"kid":"e"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, _, err := parseJWKS(doc)
		if err != nil {
			return
		}
		for kid, k := range keys {
			_, isRSA := k.key.(*rsa.PublicKey)
			ec, isEC := k.key.(*ecdsa.PublicKey)
			switch {
			case kid == "":
				t.Fatal("a key without kid was kept")
			case k.alg == "RS256" && isRSA, k.alg == "ES256" && isEC && ec.Curve == elliptic.P256():
			default:
				t.Fatalf("key %q kept as %s with %T", kid, k.alg, k.key)
			}
		}
	})
}
