// Package dynalitetest runs a throwaway dynalite (an in-memory DynamoDB
// implementation on Node.js) for tests.
package dynalitetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvBin names the dynalite executable to use instead of searching for it.
const EnvBin = "DYNALITE_BIN"

// installHint says how to get the binary Start looks for.
func installHint() string {
	root, err := moduleRoot()
	if err != nil {
		root = "<module root>"
	}
	return "npm install --no-save --prefix " + root + " dynalite@4  (or: npm install -g dynalite@4)"
}

// startTimeout bounds how long a starting dynalite may take to listen; Node
// can be slow on a loaded machine.
const startTimeout = 30 * time.Second

// Start runs dynalite on a free loopback port until the test ends and
// returns its endpoint URL. Without a dynalite binary the test is skipped,
// or fails when the CI environment variable is set.
//
// The binary is $DYNALITE_BIN, else dynalite on PATH, else
// node_modules/.bin/dynalite in the module root.
func Start(t testing.TB) (endpoint string) {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		msg := fmt.Sprintf("dynalitetest: %v; install it with: %s", err, installHint())
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Another process may take the port between our probe and dynalite's
	// bind; try a few ports before giving up.
	var errs []error
	for range 3 {
		endpoint, err := start(t, bin)
		if err == nil {
			return endpoint
		}
		errs = append(errs, err)
	}
	t.Fatalf("dynalitetest: start %s: %v", bin, errors.Join(errs...))
	return ""
}

func start(t testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	dieWithParent(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	// dynalite prints one line once it listens; then drain the rest so the
	// process never blocks on a full pipe.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		t.Cleanup(stop)
		return "http://" + addr, nil
	case <-exited:
		return "", fmt.Errorf("exited before listening on %s: %s", addr, strings.TrimSpace(stderr.String()))
	case <-timer.C:
		stop()
		return "", fmt.Errorf("not listening on %s after %v", addr, startTimeout)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func findBin() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("dynalite"); err == nil {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("dynalite is not on PATH and %w", err)
	}
	p := filepath.Join(root, "node_modules", ".bin", "dynalite")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("dynalite is neither on PATH nor at %s", p)
	}
	return p, nil
}

// moduleRoot walks up from the working directory (a test's package
// directory) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
