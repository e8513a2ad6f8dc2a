package s3local

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/parleychat/parley/internal/awsconf"
)

// SigV4 as S3 speaks it.
const (
	algorithm       = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	service         = "s3"
	// maxSkew is how far a request's signing time may be from the server's
	// clock, as on AWS.
	maxSkew = 15 * time.Minute
	// maxPresignExpiry is the longest validity S3 accepts for a presigned URL.
	maxPresignExpiry = 7 * 24 * time.Hour
)

// s3Error is a refusal, written as S3's XML error document.
type s3Error struct {
	status  int
	code    string
	message string
}

func (e *s3Error) Error() string { return e.code + ": " + e.message }

func refuse(status int, code, format string, args ...any) *s3Error {
	return &s3Error{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func accessDenied(format string, args ...any) *s3Error {
	return refuse(http.StatusForbidden, "AccessDenied", format, args...)
}

func badSignature() *s3Error {
	return refuse(http.StatusForbidden, "SignatureDoesNotMatch",
		"The request signature we calculated does not match the signature you provided. Check your key and signing method.")
}

// verifier checks AWS Signature Version 4 against one key pair, by signing
// the request again with the SDK's signer and comparing the signatures.
type verifier struct {
	keys   awsconf.Keys
	signer *v4.Signer
	now    func() time.Time
}

func newVerifier(keys awsconf.Keys, now func() time.Time) *verifier {
	// S3 signs the path as sent, without escaping it a second time.
	return &verifier{keys: keys, now: now, signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })}
}

// credential is the parsed Credential field: key/date/region/service/aws4_request.
type credential struct {
	accessKey, date, region string
}

func (v *verifier) parseCredential(raw string) (credential, *s3Error) {
	parts := strings.Split(raw, "/")
	if len(parts) != 5 || parts[3] != service || parts[4] != "aws4_request" {
		return credential{}, refuse(http.StatusBadRequest, "AuthorizationHeaderMalformed",
			"the credential %q is not ACCESS_KEY/yyyymmdd/region/s3/aws4_request", raw)
	}
	c := credential{accessKey: parts[0], date: parts[1], region: parts[2]}
	if subtle.ConstantTimeCompare([]byte(c.accessKey), []byte(v.keys.AccessKeyID)) != 1 {
		return credential{}, refuse(http.StatusForbidden, "InvalidAccessKeyId",
			"The AWS Access Key Id you provided does not exist in our records.")
	}
	return c, nil
}

// authenticate accepts r only if it carries a valid signature, in the
// Authorization header or a presigned query, made within its time limits.
// On success r's body has been checked against a signed payload hash.
func (v *verifier) authenticate(r *http.Request) (cleanup func(), err *s3Error) {
	q := r.URL.Query()
	auth := r.Header.Get("Authorization")
	presigned := q.Has("X-Amz-Signature") || q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Credential")
	switch {
	case presigned && auth != "":
		return nil, refuse(http.StatusBadRequest, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified")
	case presigned:
		err = v.checkPresigned(r, q)
	case auth != "":
		err = v.checkHeader(r, auth)
	default:
		return nil, accessDenied("Anonymous requests are refused: sign them with AWS Signature Version 4")
	}
	if err != nil {
		return nil, err
	}
	return checkPayload(r, presigned)
}

// checkHeader verifies the Authorization header form:
// AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=….
func (v *verifier) checkHeader(r *http.Request, auth string) *s3Error {
	malformed := func(why string) *s3Error {
		return refuse(http.StatusBadRequest, "AuthorizationHeaderMalformed", "The authorization header is malformed: %s", why)
	}
	alg, rest, _ := strings.Cut(auth, " ")
	if alg != algorithm {
		return refuse(http.StatusBadRequest, "InvalidRequest", "The authorization mechanism you have provided is not supported. Please use %s.", algorithm)
	}
	fields := map[string]string{}
	for f := range strings.SplitSeq(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return malformed(fmt.Sprintf("field %q is not name=value", f))
		}
		fields[k] = val
	}
	if len(fields) != 3 || fields["Credential"] == "" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return malformed("want exactly Credential, SignedHeaders and Signature")
	}
	cred, err := v.parseCredential(fields["Credential"])
	if err != nil {
		return err
	}
	signedAt, err := v.signingTime(r.Header.Get("X-Amz-Date"), cred)
	if err != nil {
		return err
	}
	if d := v.now().Sub(signedAt).Abs(); d > maxSkew {
		return refuse(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the server's time (%s) is too large.", d.Round(time.Second))
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if payloadHash == "" {
		return refuse(http.StatusBadRequest, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
	}
	c, err := signedCopy(r, fields["SignedHeaders"], r.URL.RawQuery)
	if err != nil {
		return err
	}
	if serr := v.signer.SignHTTP(r.Context(), v.credentials(), c, payloadHash, service, cred.region, signedAt); serr != nil {
		return badSignature()
	}
	_, want, _ := strings.Cut(c.Header.Get("Authorization"), "Signature=")
	return sameSignature(want, fields["Signature"])
}

// checkPresigned verifies the query form: X-Amz-Algorithm, -Credential,
// -Date, -Expires, -SignedHeaders and -Signature, all required, and refuses
// a URL past its expiry. The payload is UNSIGNED-PAYLOAD, as S3 signs it.
func (v *verifier) checkPresigned(r *http.Request, q url.Values) *s3Error {
	queryErr := func(format string, args ...any) *s3Error {
		return refuse(http.StatusForbidden, "AuthorizationQueryParametersError", format, args...)
	}
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if len(q[k]) != 1 || q.Get(k) == "" {
			return queryErr("Query-string authentication requires exactly one non-empty %s parameter", k)
		}
	}
	if q.Get("X-Amz-Algorithm") != algorithm {
		return queryErr("X-Amz-Algorithm only supports %q", algorithm)
	}
	cred, err := v.parseCredential(q.Get("X-Amz-Credential"))
	if err != nil {
		return err
	}
	signedAt, err := v.signingTime(q.Get("X-Amz-Date"), cred)
	if err != nil {
		return err
	}
	secs, perr := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if perr != nil || secs <= 0 || time.Duration(secs)*time.Second > maxPresignExpiry {
		return queryErr("X-Amz-Expires must be a whole number of seconds from 1 to %d", int64(maxPresignExpiry/time.Second))
	}
	now := v.now()
	if signedAt.Sub(now) > maxSkew {
		return accessDenied("Request is not yet valid")
	}
	if now.After(signedAt.Add(time.Duration(secs) * time.Second)) {
		return accessDenied("Request has expired")
	}
	claimed := q.Get("X-Amz-Signature")
	q.Del("X-Amz-Signature")
	c, err := signedCopy(r, q.Get("X-Amz-SignedHeaders"), q.Encode())
	if err != nil {
		return err
	}
	signed, _, serr := v.signer.PresignHTTP(r.Context(), v.credentials(), c, unsignedPayload, service, cred.region, signedAt,
		func(o *v4.SignerOptions) { o.DisableHeaderHoisting = true })
	if serr != nil {
		return badSignature()
	}
	u, perr := url.Parse(signed)
	if perr != nil {
		return badSignature()
	}
	return sameSignature(u.Query().Get("X-Amz-Signature"), claimed)
}

func (v *verifier) credentials() aws.Credentials {
	return aws.Credentials{AccessKeyID: v.keys.AccessKeyID, SecretAccessKey: v.keys.SecretAccessKey}
}

// signingTime parses X-Amz-Date, which must fall on the credential's day.
func (v *verifier) signingTime(raw string, cred credential) (time.Time, *s3Error) {
	t, err := time.Parse(amzDateFormat, raw)
	if err != nil {
		return time.Time{}, accessDenied("X-Amz-Date %q is not a date like 20060102T150405Z", raw)
	}
	if t.Format("20060102") != cred.date {
		return time.Time{}, badSignature()
	}
	return t, nil
}

// signedCopy returns a request holding exactly what the client says it
// signed (its signed headers, the host, the path as sent, rawQuery), for
// the signer to sign again.
func signedCopy(r *http.Request, signedHeaders, rawQuery string) (*http.Request, *s3Error) {
	path := r.RequestURI
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if !strings.HasPrefix(path, "/") {
		path = r.URL.EscapedPath() // an absolute-form request line
	}
	c := &http.Request{
		Method: r.Method,
		Host:   r.Host,
		Header: http.Header{},
		// The signer takes the path from Opaque as it is, unescaped again.
		URL: &url.URL{Scheme: "http", Host: r.Host, Opaque: "//" + r.Host + path, RawQuery: rawQuery},
	}
	for h := range strings.SplitSeq(signedHeaders, ";") {
		switch h {
		case "host":
		case "content-length":
			c.ContentLength = r.ContentLength
		default:
			vals := r.Header.Values(h)
			if h == "" || len(vals) == 0 {
				return nil, refuse(http.StatusForbidden, "SignatureDoesNotMatch", "The signed header %q is not in the request.", h)
			}
			c.Header[http.CanonicalHeaderKey(h)] = vals
		}
	}
	// As S3 does, refuse x-amz-* headers the client did not sign: the store
	// acts on them (x-amz-copy-source turns a PUT into a copy of another
	// key) or keeps them as metadata. The payload hash is checked against
	// the body instead.
	signed := strings.Split(signedHeaders, ";")
	for name := range r.Header {
		h := strings.ToLower(name)
		if strings.HasPrefix(h, "x-amz-") && h != "x-amz-content-sha256" && !slices.Contains(signed, h) {
			return nil, accessDenied("There were headers present in the request which were not signed: %s", h)
		}
	}
	return c, nil
}

func sameSignature(want, got string) *s3Error {
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return badSignature()
	}
	return nil
}

// checkPayload holds the body to the x-amz-content-sha256 the client
// signed: a hex SHA-256 must match (the body is read to a temporary file
// first, so a mismatched body is never stored), UNSIGNED-PAYLOAD is taken
// as it comes, and streaming (aws-chunked) payloads are not supported. A
// presigned request may omit the header.
func checkPayload(r *http.Request, presigned bool) (cleanup func(), err *s3Error) {
	none := func() {}
	h := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case h == "" && presigned, h == unsignedPayload:
		return none, nil
	case strings.HasPrefix(h, "STREAMING-"):
		return nil, refuse(http.StatusNotImplemented, "NotImplemented",
			"Streaming (aws-chunked) payloads are not supported here; send the body's SHA-256 or UNSIGNED-PAYLOAD")
	case len(h) != sha256.Size*2 || strings.ToLower(h) != h:
		return nil, refuse(http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 must be a lowercase hex SHA-256 or UNSIGNED-PAYLOAD")
	}
	if _, herr := hex.DecodeString(h); herr != nil {
		return nil, refuse(http.StatusBadRequest, "InvalidArgument", "x-amz-content-sha256 must be a lowercase hex SHA-256 or UNSIGNED-PAYLOAD")
	}
	mismatch := refuse(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	if r.ContentLength == 0 {
		if sum := sha256.Sum256(nil); hex.EncodeToString(sum[:]) != h {
			return nil, mismatch
		}
		return none, nil
	}
	f, ferr := os.CreateTemp("", "s3local-body-*")
	if ferr != nil {
		return nil, refuse(http.StatusInternalServerError, "InternalError", "cannot hold the request body: %v", ferr)
	}
	cleanup = func() {
		f.Close()
		os.Remove(f.Name())
	}
	sum := sha256.New()
	n, cerr := io.Copy(io.MultiWriter(f, sum), r.Body)
	if cerr != nil {
		cleanup()
		return nil, refuse(http.StatusBadRequest, "IncompleteBody", "reading the request body: %v", cerr)
	}
	if hex.EncodeToString(sum.Sum(nil)) != h {
		cleanup()
		return nil, mismatch
	}
	if _, serr := f.Seek(0, io.SeekStart); serr != nil {
		cleanup()
		return nil, refuse(http.StatusInternalServerError, "InternalError", "rewinding the request body: %v", serr)
	}
	r.Body, r.ContentLength = f, n
	return cleanup, nil
}
