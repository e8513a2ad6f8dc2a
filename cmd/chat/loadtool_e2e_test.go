package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLoadToolAgainstDev runs the load tool (cmd/chatbench) against chat dev
// at a low rate, so that a change to the server or to the tool that breaks
// the benchmark fails the tests, not the next measurement.
func TestLoadToolAgainstDev(t *testing.T) {
	e := newEnv(t)
	dev := e.start("dev")
	e.waitHTTP(dev)

	bin := filepath.Join(t.TempDir(), "chatbench")
	build := exec.Command("go", "build", "-o", bin, "../chatbench")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build chatbench: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-url", "ws://"+e.http+"/ws", "-secret", testSecret,
		"-users", "20", "-rate", "100", "-warmup", "500ms", "-duration", "2s", "-settle", "2s",
		"-db", e.dbURL, "-stats-lag", "500ms", "-server-pid", strconv.Itoa(dev.cmd.Process.Pid))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chatbench: %v\n%s", err, out)
	}
	report := string(out)

	m := regexp.MustCompile(`sent (\d+), delivered (\d+), refused (\d+) .*\((\d+) in the measured window\)`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no send summary in:\n%s", report)
	}
	sent, _ := strconv.Atoi(m[1])
	delivered, _ := strconv.Atoi(m[2])
	refused, _ := strconv.Atoi(m[3])
	if sent < 100 || delivered+refused != sent {
		t.Fatalf("sent %d, delivered %d, refused %d: every send must be delivered or refused\n%s", sent, delivered, refused, report)
	}
	if measured, _ := strconv.Atoi(m[4]); measured > refused {
		t.Errorf("%d refusals in the measured window, of %d in all\n%s", measured, refused, report)
	}
	for _, want := range []string{"send→receive latency over", "p50", "p99.9", "server RSS", "PostgreSQL transactions:"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	tx := regexp.MustCompile(`: ([0-9.]+) per message`).FindStringSubmatch(report)
	if tx == nil {
		t.Fatalf("no transactions per message in:\n%s", report)
	}
	if v, _ := strconv.ParseFloat(tx[1], 64); v <= 0 {
		t.Errorf("transactions per message %s: the chat database's transactions were not counted\n%s", tx[1], report)
	}
}
