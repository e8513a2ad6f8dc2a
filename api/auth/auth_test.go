package auth

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("test-secret-0123456789abcdef")

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUserID(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	good, err := Issue(secret, 42, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	nonePayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"42","exp":` + itoa(exp) + `}`))

	cases := []struct {
		name  string
		token string
		want  int64
	}{
		{"issued", good, 42},
		{"numeric sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": 7, "exp": exp}), 7},
		{"user_id claim", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"user_id": 9, "exp": exp}), 9},
		{"missing", "", 0},
		{"garbage", "not.a.token", 0},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "1", "exp": time.Now().Add(-time.Hour).Unix()}), 0},
		{"no expiry", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "1"}), 0},
		{"forged", sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789"), jwt.MapClaims{"sub": "1", "exp": exp}), 0},
		{"alg none", noneHeader + "." + nonePayload + ".", 0},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "1", "exp": exp}), 0},
		{"non-numeric sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": exp}), 0},
		{"negative sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": -3, "exp": exp}), 0},
		{"fractional sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": 1.5, "exp": exp}), 0},
		{"no subject", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": exp}), 0},
		{"sub past float64's integers", signRaw(t, `{"sub":9007199254740993,"exp":`+itoa(exp)+`}`), 9007199254740993},
		{"sub as the largest id", signRaw(t, `{"sub":"9223372036854775807","exp":`+itoa(exp)+`}`), 9223372036854775807},
		{"sub past int64", signRaw(t, `{"sub":9223372036854775808,"exp":`+itoa(exp)+`}`), 0},
		{"sub with a fraction of zero", signRaw(t, `{"sub":42.0,"exp":`+itoa(exp)+`}`), 0},
		{"sub with an exponent", signRaw(t, `{"sub":4.2e1,"exp":`+itoa(exp)+`}`), 0},
		{"sub with a leading zero", signRaw(t, `{"sub":"042","exp":`+itoa(exp)+`}`), 0},
		{"sub with a sign", signRaw(t, `{"sub":"+42","exp":`+itoa(exp)+`}`), 0},
		{"sub with spaces", signRaw(t, `{"sub":" 42","exp":`+itoa(exp)+`}`), 0},
		{"sub zero", signRaw(t, `{"sub":0,"exp":`+itoa(exp)+`}`), 0},
		{"sub true", signRaw(t, `{"sub":true,"exp":`+itoa(exp)+`}`), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := v.UserID(t.Context(), c.token)
			if c.want == 0 {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("want ErrUnauthenticated, got id=%d err=%v", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestShortSecretRefused(t *testing.T) {
	if _, err := NewVerifier([]byte("short")); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Fatalf("short secret accepted: %v", err)
	}
}

// signRaw signs a payload exactly as written, so that numbers reach the
// verifier with every digit.
func signRaw(t *testing.T, payload string) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	unsigned := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, secret)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + b64(sig)
}

func TestCheckSecret(t *testing.T) {
	for secret, ok := range map[string]bool{
		strings.Repeat(" ", 32):            false,
		strings.Repeat(" ", 16):            false,
		strings.Repeat("ab", 20):           false,
		"short-but-varied-0123456789":      false,
		"0123456789abcdef0123456789abcdef": true,
		"kR7#pQ2!vX9@mN4$wL8%zT3^bY6&cF1*": true,
	} {
		if err := CheckSecret([]byte(secret)); (err == nil) != ok {
			t.Errorf("CheckSecret(%q) = %v, want ok=%v", secret, err, ok)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestVerifyValidUntil(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(5 * time.Second).Truncate(time.Second)
	c, err := v.Verify(t.Context(), sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "3", "exp": exp.Unix()}))
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != 3 || !c.ValidUntil.Equal(exp.Add(v.leeway)) {
		t.Fatalf("got %+v, want user 3 valid until %v (exp plus leeway)", c, exp.Add(v.leeway))
	}
}
