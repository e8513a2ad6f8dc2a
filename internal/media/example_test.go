package media_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"

	"github.com/parleychat/parley/internal/mediatest"

	"github.com/parleychat/parley/internal/media"
	"github.com/parleychat/parley/internal/s3local"
)

// Local wiring: the embedded S3 server on a loopback port, and a Store
// pointed at it.
func Example_local() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.DiscardHandler)

	dir, err := os.MkdirTemp("", "s3local-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := s3local.New(dir, s3local.Config{}, logger)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.EnsureBucket(ctx, "chat-media"); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()

	store, err := media.New(ctx, media.Config{
		Bucket:    "chat-media",
		Endpoint:  "http://" + ln.Addr().String(),
		PathStyle: true,
		Local:     true,
	}, logger)
	if err != nil {
		log.Fatal(err)
	}

	wav := mediatest.WAV(8000, 16000) // two seconds of silence
	obj, err := store.Upload(ctx, 42, bytes.NewReader(wav), int64(len(wav)), "audio/wav")
	if err != nil {
		log.Fatal(err)
	}
	owner, _ := media.OwnerOf(obj.Key)
	secs, _ := media.AudioDuration(bytes.NewReader(wav), obj.MIME)
	fmt.Println(obj.Kind, obj.MIME, obj.Size, owner, secs)
	// Output: audio audio/wav 32044 42 2
}
