// Package media stores chat media (images, video, audio) in S3 and checks
// uploads: the type comes from the file's bytes, never from its name or the
// client's header, and each kind has a size limit.
//
// Keys have the form chat/{userId}/{yyyy}/{mm}/{uuidv7}.{ext}; the owner in
// the key lets the API check that a message references only media its sender
// uploaded (OwnerOf).
//
// Two upload paths exist. Upload streams a file through the server. For
// large files the client can instead PUT to a presigned URL (PresignPut),
// under chat/upload/, and the server then calls Verify, which copies the
// object out of chat/upload/ and checks the copy: the copy's key never had a
// presigned PUT, so what was checked is what is served, on AWS as locally.
package media

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/thumbnail"
)

// Errors callers map to responses. ErrTypeMismatch always comes wrapped
// together with ErrUnsupportedType, so checking the latter (415) covers both.
var (
	ErrUnsupportedType = errors.New("media: unsupported type")                         // 415
	ErrTypeMismatch    = errors.New("media: content does not match the declared type") // 415
	ErrTooLarge        = errors.New("media: too large")                                // 413
	ErrCorrupt         = errors.New("media: corrupt file")                             // 422
	ErrInvalidSize     = errors.New("media: invalid size")                             // 400
	ErrInvalidKey      = errors.New("media: invalid key")                              // 400
	ErrNotFound        = errors.New("media: not found")                                // 404
	ErrExpired         = errors.New("media: upload completed after its URL expired")   // 403
)

// Defaults for zero Config fields.
const (
	DefaultMaxImageBytes = 10 << 20
	DefaultMaxVideoBytes = 100 << 20
	DefaultMaxAudioBytes = 20 << 20
	DefaultPresignTTL    = 15 * time.Minute
	DefaultUploadGrace   = 30 * time.Minute
	DefaultRegion        = awsconf.DefaultRegion
)

// Config configures a Store. Zero fields take the defaults above.
type Config struct {
	Bucket string
	// Endpoint is the S3 base URL; empty means AWS itself.
	Endpoint string
	// PublicEndpoint, if set, replaces Endpoint in presigned URLs: clients
	// may reach a local server under another address than the app does.
	PublicEndpoint string
	Region         string
	// Keys sign requests to a custom Endpoint; empty means the fixed local
	// pair the embedded server accepts.
	// Against AWS itself the SDK's default chain applies instead.
	Keys      awsconf.Keys
	PathStyle bool
	// Local selects settings that the embedded S3 server needs: the SDK's
	// default checksums would otherwise corrupt stored objects.
	Local bool

	MaxImageBytes int64
	MaxVideoBytes int64
	MaxAudioBytes int64
	// PresignTTL is how long presigned URLs stay valid.
	PresignTTL time.Duration
	// UploadGrace is how long after its URL expired a presigned upload may
	// still complete: S3 checks expiry when a request starts, and a large
	// file on a slow mobile link takes a while.
	UploadGrace time.Duration
	// TempDir holds uploads while they are checked and sent on; empty
	// means the system default.
	TempDir string
	// Images are the limits the thumbnailer decodes within (MaxPixels,
	// MaxDimension): an image beyond them, or whose header no decoder
	// reads, is refused at upload rather than sent without a preview.
	Images thumbnail.Limits
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxImageBytes == 0 {
		c.MaxImageBytes = DefaultMaxImageBytes
	}
	if c.MaxVideoBytes == 0 {
		c.MaxVideoBytes = DefaultMaxVideoBytes
	}
	if c.MaxAudioBytes == 0 {
		c.MaxAudioBytes = DefaultMaxAudioBytes
	}
	if c.PresignTTL == 0 {
		c.PresignTTL = DefaultPresignTTL
	}
	if c.UploadGrace == 0 {
		c.UploadGrace = DefaultUploadGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Bucket == "":
		return errors.New("media: config: bucket is required")
	case c.MaxImageBytes < 0 || c.MaxVideoBytes < 0 || c.MaxAudioBytes < 0:
		return errors.New("media: config: size limits must be positive")
	case c.PresignTTL < time.Second || c.PresignTTL > 7*24*time.Hour:
		// S3 refuses presigned URLs valid for longer than 7 days.
		return fmt.Errorf("media: config: presign TTL %s outside 1s..168h", c.PresignTTL)
	case c.UploadGrace < 0:
		return errors.New("media: config: upload grace must not be negative")
	}
	for _, e := range []string{c.Endpoint, c.PublicEndpoint} {
		if e == "" {
			continue
		}
		if err := awsconf.CheckEndpoint(e); err != nil {
			return fmt.Errorf("media: config: %w", err)
		}
	}
	return nil
}

// Store reads and writes media objects in one bucket.
type Store struct {
	cfg     Config
	client  *s3.Client
	presign *s3.PresignClient
	logger  *slog.Logger
}

// Object describes a stored media object.
type Object struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	MIME string `json:"mime"`
	Kind Kind   `json:"kind"`
}

// PresignedUpload tells a client how to upload one file straight to S3.
// The body must be exactly Size bytes, sent with Method to URL along with
// Headers, before ExpiresAt.
type PresignedUpload struct {
	URL       string            `json:"url"`
	Key       string            `json:"key"`
	Method    string            `json:"method"`
	Headers   map[string]string `json:"headers"`
	ExpiresAt time.Time         `json:"expiresAt"`
	Size      int64             `json:"size"`
	MIME      string            `json:"mime"`
	Kind      Kind              `json:"kind"`
}

// New builds a Store and its S3 client (see awsconf.Load): against AWS
// itself credentials come from the SDK's default chain; a custom Endpoint
// gets cfg.Keys, or the fixed local pair (awsconf.Keys.OrLocal), which is
// what the embedded server verifies signatures against.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	awsCfg, err := awsconf.Load(ctx, awsconf.Options{Endpoint: cfg.Endpoint, Region: cfg.Region, Keys: cfg.Keys})
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}

	clientOpts := func(endpoint string) func(*s3.Options) {
		return func(o *s3.Options) {
			if endpoint != "" {
				o.BaseEndpoint = aws.String(endpoint)
			}
			o.UsePathStyle = cfg.PathStyle
			if cfg.Local {
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		}
	}
	client := s3.NewFromConfig(awsCfg, clientOpts(cfg.Endpoint))
	presignClient := client
	if cfg.PublicEndpoint != "" {
		presignClient = s3.NewFromConfig(awsCfg, clientOpts(cfg.PublicEndpoint))
	}
	return &Store{
		cfg:     cfg,
		client:  client,
		presign: s3.NewPresignClient(presignClient, s3.WithPresignExpires(cfg.PresignTTL)),
		logger:  logger,
	}, nil
}

// MaxSize returns the size limit for a kind, or 0 for an unknown kind.
func (s *Store) MaxSize(k Kind) int64 {
	switch k {
	case KindImage:
		return s.cfg.MaxImageBytes
	case KindVideo:
		return s.cfg.MaxVideoBytes
	case KindAudio:
		return s.cfg.MaxAudioBytes
	}
	return 0
}

func (s *Store) maxAny() int64 {
	return max(s.cfg.MaxImageBytes, s.cfg.MaxVideoBytes, s.cfg.MaxAudioBytes)
}

func tooLarge(k Kind, limit int64) error {
	return fmt.Errorf("%w: %s limit is %d bytes", ErrTooLarge, k, limit)
}

// Upload stores one file for userID under a new key. The type is sniffed
// from the bytes; declaredType, when given, must be of the same kind (a PNG
// declared as image/jpeg is stored as image/png). declaredSize (negative if
// unknown) only serves to refuse a file early: at most the kind's limit plus
// one byte is read from r, whatever it claims.
func (s *Store) Upload(ctx context.Context, userID int64, r io.Reader, declaredSize int64, declaredType string) (Object, error) {
	if userID <= 0 {
		return Object{}, fmt.Errorf("media: upload: invalid user id %d", userID)
	}
	if declaredSize > s.maxAny() {
		return Object{}, fmt.Errorf("%w: %d bytes declared", ErrTooLarge, declaredSize)
	}
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Object{}, fmt.Errorf("media: read upload: %w", err)
	}
	head = head[:n]
	t, err := resolveType(head, declaredType)
	if err != nil {
		return Object{}, err
	}
	limit := s.MaxSize(t.Kind)
	if declaredSize > limit {
		return Object{}, tooLarge(t.Kind, limit)
	}
	body, size, cleanup, err := s.spool(io.MultiReader(bytes.NewReader(head), r), limit)
	if err != nil {
		return Object{}, err
	}
	defer cleanup()
	if size > limit {
		return Object{}, tooLarge(t.Kind, limit)
	}
	if err := s.checkImage(t, io.NewSectionReader(body, 0, size), body, size); err != nil {
		return Object{}, err
	}
	key := Key(userID, s.cfg.Now(), t.Ext)
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          body, // seekable: the SDK refuses unseekable bodies over plain HTTP
		ContentLength: aws.Int64(size),
		ContentType:   aws.String(t.MIME),
	})
	if err != nil {
		return Object{}, fmt.Errorf("media: put %s: %w", key, err)
	}
	s.logger.DebugContext(ctx, "media: stored upload", "key", key, "size", size, "mime", t.MIME)
	return Object{Key: key, Size: size, MIME: t.MIME, Kind: t.Kind}, nil
}

// spool copies at most limit+1 bytes of r into a temporary file, which
// cleanup removes. A file rather than memory: a buffer grown to the size
// of each upload in flight is what would bound the process's memory.
func (s *Store) spool(r io.Reader, limit int64) (body *os.File, size int64, cleanup func(), err error) {
	f, err := os.CreateTemp(s.cfg.TempDir, "media-upload-*")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("media: spool upload: %w", err)
	}
	cleanup = func() {
		f.Close()
		os.Remove(f.Name())
	}
	n, err := io.Copy(f, io.LimitReader(r, limit+1))
	if err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("media: read upload: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("media: spool upload: %w", err)
	}
	return f, n, cleanup, nil
}

// resolveType sniffs head and reconciles it with the declared type.
func resolveType(head []byte, declared string) (fileType, error) {
	t, err := sniff(head)
	if err != nil {
		return fileType{}, err
	}
	if declared == "" {
		return t, nil
	}
	mismatch := func(d string) error {
		return fmt.Errorf("%w: %w: declared %q, content is %s", ErrUnsupportedType, ErrTypeMismatch, d, t.MIME)
	}
	m, err := parseMIME(declared)
	if err != nil {
		return fileType{}, mismatch(declared)
	}
	if m == "application/octet-stream" || m == "binary/octet-stream" {
		return t, nil // says nothing about the type
	}
	var kind Kind
	if dt, ok := typeByMIME(m); ok {
		kind = dt.Kind
	} else {
		top, _, _ := strings.Cut(m, "/")
		kind = Kind(top)
	}
	if kind == t.Kind {
		return t, nil
	}
	// Generic MP4/3GP/WebM containers carry voice notes too; trust the
	// client's word that this one is audio.
	if kind == KindAudio {
		switch t {
		case typeMP4:
			return typeM4A, nil
		case type3GP:
			return type3GPAudio, nil
		case typeWebM:
			return typeWebA, nil
		}
	}
	return fileType{}, mismatch(m)
}

// PresignPut grants userID a URL to upload one file of contentType and
// exactly size bytes, to a key under chat/upload/. After the client's PUT,
// call Verify with the Key; messages refer to the key Verify returns.
//
// S3 and the embedded server enforce the signed Content-Type,
// Content-Length and expiry; Verify checks the bytes.
func (s *Store) PresignPut(ctx context.Context, userID int64, contentType string, size int64) (PresignedUpload, error) {
	if userID <= 0 {
		return PresignedUpload{}, fmt.Errorf("media: presign: invalid user id %d", userID)
	}
	kind, mimeType, ext, err := TypeOf(contentType)
	if err != nil {
		return PresignedUpload{}, err
	}
	if size <= 0 {
		return PresignedUpload{}, fmt.Errorf("%w: %d", ErrInvalidSize, size)
	}
	if limit := s.MaxSize(kind); size > limit {
		return PresignedUpload{}, tooLarge(kind, limit)
	}
	key := uploadKey(userID, s.cfg.Now(), ext)
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		ContentType:   aws.String(mimeType),
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		return PresignedUpload{}, fmt.Errorf("media: presign put %s: %w", key, err)
	}
	expires, err := presignExpiry(req.URL)
	if err != nil {
		return PresignedUpload{}, err
	}
	headers := make(map[string]string, len(req.SignedHeader))
	for k, v := range req.SignedHeader {
		// HTTP clients set these two themselves.
		if k = http.CanonicalHeaderKey(k); k == "Host" || k == "Content-Length" {
			continue
		}
		headers[k] = strings.Join(v, ",")
	}
	return PresignedUpload{
		URL:       req.URL,
		Key:       key,
		Method:    req.Method,
		Headers:   headers,
		ExpiresAt: expires,
		Size:      size,
		MIME:      mimeType,
		Kind:      kind,
	}, nil
}

// presignExpiry reads a presigned URL's expiry from its query, since the SDK
// signs with its own clock.
func presignExpiry(raw string) (time.Time, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("media: presigned URL: %w", err)
	}
	q := u.Query()
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return time.Time{}, fmt.Errorf("media: presigned URL date: %w", err)
	}
	d, err := time.ParseDuration(q.Get("X-Amz-Expires") + "s")
	if err != nil {
		return time.Time{}, fmt.Errorf("media: presigned URL expiry: %w", err)
	}
	return signed.Add(d), nil
}

// Verify checks an object a message is to refer to and returns it.
//
// An upload through a presigned URL (a chat/upload/ key) must exist and
// have arrived in time; Verify then copies it to its verified key (the same
// key outside chat/upload/, which no presigned URL was issued for) and
// checks the copy, deletes the upload, and returns the copy: a later PUT
// with the same URL cannot change what was checked. Any other key was
// written by the server (Upload, an earlier Verify) and is checked where it
// is. The checks: the object fits the limit for the kind its key names and
// its bytes are of that kind. A subtype mix-up within the kind is accepted
// and the returned MIME is the sniffed one; the stored Content-Type stays as
// uploaded (image decoders and players sniff anyway). Objects that fail are
// deleted before the error is returned. Calling Verify again, with either
// key, returns the same object.
func (s *Store) Verify(ctx context.Context, key string) (Object, error) {
	info, err := ParseKey(key)
	if err != nil {
		return Object{}, err
	}
	if info.Thumbnail {
		return Object{}, fmt.Errorf("%w: thumbnail key", ErrInvalidKey)
	}
	want, _ := typeByExt(info.Ext) // ParseKey checked the extension
	if !info.Upload {
		// Written by the server, maybe referenced by earlier messages:
		// checked, never deleted here.
		return s.check(ctx, key, want)
	}
	final := verifiedKey(key)
	switch done, err := s.Exists(ctx, final); {
	case err != nil:
		return Object{}, err
	case done: // verified before, e.g. for a send that is retried
		return s.check(ctx, final, want)
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return Object{}, s.mapErr("head", key, err)
	}
	if deadline := info.Created.Add(s.cfg.PresignTTL + s.cfg.UploadGrace); head.LastModified != nil && head.LastModified.After(deadline) {
		return Object{}, s.reject(ctx, key, fmt.Errorf("%w: stored %s, deadline %s",
			ErrExpired, head.LastModified.UTC().Format(time.RFC3339), deadline.Format(time.RFC3339)))
	}
	_, err = s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:     aws.String(s.cfg.Bucket),
		Key:        aws.String(final),
		CopySource: aws.String(s.cfg.Bucket + "/" + key), // keys hold nothing to escape
	})
	if err != nil {
		return Object{}, s.mapErr("copy", key, err)
	}
	obj, err := s.check(ctx, final, want)
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnsupportedType) || errors.Is(err, ErrCorrupt) {
		// Nothing refers to this copy yet. (On AWS the functions may
		// delete only uploads: a refused copy stays for the lifecycle
		// rule, and Verify of its upload refuses it again.)
		_ = s.reject(ctx, final, err)
		return Object{}, s.reject(ctx, key, err)
	}
	if err != nil {
		return Object{}, err
	}
	if err := s.Delete(ctx, key); err != nil {
		// The copy is what counts; the bucket lifecycle rule removes the
		// upload.
		s.logger.InfoContext(ctx, "media: verified upload left for the lifecycle rule", "key", key, "err", err)
	}
	return obj, nil
}

// check reads the size and the first bytes of the object under key, which
// must be of want's kind. It deletes nothing: only Verify knows whether an
// object is an unreferenced copy.
func (s *Store) check(ctx context.Context, key string, want fileType) (Object, error) {
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return Object{}, s.mapErr("head", key, err)
	}
	size := aws.ToInt64(head.ContentLength)
	switch limit := s.MaxSize(want.Kind); {
	case size > limit:
		return Object{}, tooLarge(want.Kind, limit)
	case size == 0:
		return Object{}, fmt.Errorf("%w: empty file", ErrUnsupportedType)
	}

	in := &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)}
	if want.Kind != KindImage {
		in.Range = aws.String(fmt.Sprintf("bytes=0-%d", SniffLen-1))
	} // an image's header is read on from the same stream, as far as it goes
	got, err := s.client.GetObject(ctx, in)
	if err != nil {
		return Object{}, s.mapErr("get", key, err)
	}
	defer got.Body.Close()
	br := bufio.NewReaderSize(io.LimitReader(got.Body, size), SniffLen)
	buf, err := br.Peek(SniffLen)
	if err != nil && !errors.Is(err, io.EOF) {
		return Object{}, fmt.Errorf("media: read %s: %w", key, err)
	}
	t, err := resolveType(buf, want.MIME)
	if err != nil {
		return Object{}, err
	}
	if err := s.checkImage(t, br, objectRange{ctx, s, key}, size); err != nil {
		return Object{}, err
	}
	return Object{Key: key, Size: size, MIME: t.MIME, Kind: t.Kind}, nil
}

// reject deletes an object that failed Verify and nothing refers to, and
// returns why it failed.
func (s *Store) reject(ctx context.Context, key string, cause error) error {
	s.logger.InfoContext(ctx, "media: deleting rejected upload", "key", key, "reason", cause.Error())
	if err := s.Delete(ctx, key); err != nil {
		// The upload stays refused either way; the bucket lifecycle rule
		// removes leftovers.
		s.logger.ErrorContext(ctx, "media: delete rejected upload", "key", key, "err", err)
	}
	return cause
}

// PresignGet returns a short-lived URL to download an original or a
// thumbnail, valid for the configured TTL. It does not check that the
// object exists.
func (s *Store) PresignGet(ctx context.Context, key string) (string, time.Time, error) {
	if _, err := ParseKey(key); err != nil {
		return "", time.Time{}, err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("media: presign get %s: %w", key, err)
	}
	expires, err := presignExpiry(req.URL)
	if err != nil {
		return "", time.Time{}, err
	}
	return req.URL, expires, nil
}

// Get opens an object for reading; the caller closes the body. Object.MIME
// is the stored Content-Type.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	if _, err := ParseKey(key); err != nil {
		return nil, Object{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return nil, Object{}, s.mapErr("get", key, err)
	}
	m := aws.ToString(out.ContentType)
	obj := Object{Key: key, Size: aws.ToInt64(out.ContentLength), MIME: m}
	if t, ok := typeByMIME(m); ok {
		obj.Kind = t.Kind
	}
	return out.Body, obj, nil
}

// Put stores body under key, such as a thumbnail from ThumbnailKey.
func (s *Store) Put(ctx context.Context, key string, body []byte, contentType string) error {
	if _, err := ParseKey(key); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String(contentType),
	})
	if err != nil {
		return fmt.Errorf("media: put %s: %w", key, err)
	}
	return nil
}

// Exists reports whether an object is stored under key.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	if _, err := ParseKey(key); err != nil {
		return false, err
	}
	_, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		if err = s.mapErr("head", key, err); errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// Delete removes an object; deleting a missing object is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := ParseKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return fmt.Errorf("media: delete %s: %w", key, err)
	}
	return nil
}

// mapErr turns S3's "no such key" answers into ErrNotFound. A missing
// bucket is left alone: that is a configuration error, not a missing file.
func (s *Store) mapErr(op, key string, err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf):
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket":
	case errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return fmt.Errorf("media: %s %s: %w", op, key, err)
}
