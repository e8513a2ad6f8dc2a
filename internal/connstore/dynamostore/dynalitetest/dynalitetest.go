// Package dynalitetest runs a throwaway dynalite (an in-memory DynamoDB
// implementation on Node.js) for tests.
package dynalitetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/testbin"
)

// EnvBin names the dynalite executable to use instead of searching for it.
const EnvBin = "DYNALITE_BIN"

// startTimeout bounds how long a starting dynalite may take to listen; Node
// can be slow on a loaded machine.
const startTimeout = 30 * time.Second

// Start runs dynalite on a free loopback port until the test ends and
// returns its endpoint URL. The binary is found by testbin.Find ($DYNALITE_BIN,
// PATH, tools/bin).
func Start(t testing.TB) (endpoint string) {
	t.Helper()
	bin := testbin.Find(t, "dynalite", EnvBin)
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
