package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/events"
)

// readmeStep is one line of the README's separate-process block.
type readmeStep struct {
	line       string
	env        [2]string // export NAME=VALUE
	args       []string  // dist/chat ARGS
	background bool      // ends with &
	make       string    // make TARGET
}

var trailingComment = regexp.MustCompile(`\s+#.*$`)

// readmeSteps reads the shell block that follows the separate-processes
// marker in README.md.
func readmeSteps(t *testing.T) []readmeStep {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []readmeStep
	state := 0 // 0 before the marker, 1 before the block, 2 inside it
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && strings.TrimSpace(line) == "<!-- separate-processes -->":
			state = 1
		case state == 1 && strings.HasPrefix(line, "```"):
			state = 2
		case state == 2 && strings.HasPrefix(line, "```"):
			return steps
		case state == 2:
			cmd := strings.TrimSpace(trailingComment.ReplaceAllString(line, ""))
			if cmd == "" {
				continue
			}
			st := readmeStep{line: cmd}
			if rest, ok := strings.CutSuffix(cmd, "&"); ok {
				st.background, cmd = true, strings.TrimSpace(rest)
			}
			fields := strings.Fields(cmd)
			switch {
			case fields[0] == "export" && len(fields) == 2 && strings.Contains(fields[1], "="):
				name, value, _ := strings.Cut(fields[1], "=")
				st.env = [2]string{name, value}
			case fields[0] == "dist/chat":
				st.args = fields[1:]
			case fields[0] == "make" && len(fields) == 2:
				st.make = fields[1]
			default:
				t.Fatalf("README separate-process block: cannot run %q", line)
			}
			steps = append(steps, st)
		}
	}
	t.Fatal("README.md has no ```sh block after <!-- separate-processes -->")
	return nil
}

// TestReadmeSeparateProcesses runs the README's separate-process commands as
// written, one process per piece, and drives the result as a client would:
// a REST send reaches a WebSocket client of the gateway and is stored, and an
// upload gets its thumbnail. Only the listening ports differ from the
// README's defaults (other programs may hold those): every default address
// the README names is swapped for a free one, in its settings too.
func TestReadmeSeparateProcesses(t *testing.T) {
	steps := readmeSteps(t)
	e := newEnv(t)
	e.extra = append(e.extra, "CHAT_LOG_LEVEL=info")
	ports := map[string]string{
		"127.0.0.1:8080": e.http, "127.0.0.1:8081": e.admin,
		"127.0.0.1:8082": e.gateway, "127.0.0.1:8083": e.s3,
	}
	var (
		procs   = map[string]*proc{}
		started []string
		ran     = map[string]bool{}
	)
	for _, st := range steps {
		switch {
		case st.make != "":
			// The test binary is built from the same package; check the
			// target really builds it at the path the README runs.
			out, err := exec.Command("make", "-s", "-n", "-C", "../..", st.make).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "build -o dist/chat ./cmd/chat") {
				t.Fatalf("make -n %s does not build dist/chat: %v\n%s", st.make, err, out)
			}
		case st.env[0] != "":
			v := st.env[1]
			for def, free := range ports {
				v = strings.ReplaceAll(v, def, free)
			}
			e.extra = append(e.extra, st.env[0]+"="+v)
			if st.env[0] == "JWT_SECRET" {
				e.secret = v
			}
		case !st.background:
			if code := runCmd(t, e, st.args...); code != 0 {
				t.Fatalf("%s exited %d", st.line, code)
			}
		default:
			name := strings.Join(st.args, " ")
			procs[name] = e.start(st.args...)
			started = append(started, name)
		}
		ran[strings.Join(st.args, " ")] = true
	}
	for _, want := range []string{"migrate", "s3", "api", "gateway", "worker persister", "worker fanout", "worker thumbnailer", "worker notifier"} {
		if !ran[want] {
			t.Fatalf("the README's block does not run chat %s", want)
		}
	}
	e.waitHTTP(procs["api"])
	gw := e.gatewayView()
	gw.waitHTTP(procs["gateway"])

	// A message: pushed to B's socket on the gateway, stored by the persister.
	b := gw.dial(2)
	sent := e.send(1, 2, "hello from the split deployment")
	b.expect("newMessage", func(f map[string]any) bool { return data(f)["id"] == sent.ID })
	if ms := e.messages(2, sent.ConversationID, 1); ms[0].ID != sent.ID || ms[0].Seq != 1 {
		t.Fatalf("stored %+v, want %s at seq 1", ms[0], sent.ID)
	}

	// An upload through the API into the S3 process; the thumbnailer makes
	// its thumbnail.
	img := e.sendImage(1, 2, testJPEG(t, 640, 480))
	waitUntil(t, "the thumbnail is recorded", func() bool {
		for _, m := range e.messages(2, img.ConversationID, 2) {
			if m.ID == img.ID {
				return m.ThumbnailURL != nil
			}
		}
		return false
	})
	var thumb message
	for _, m := range e.messages(2, img.ConversationID, 2) {
		if m.ID == img.ID {
			thumb = m
		}
	}
	if w, h := jpegSize(t, *thumb.ThumbnailURL); w != 320 || h != 240 {
		t.Fatalf("thumbnail is %dx%d, want 320x240", w, h)
	}

	// The split deployment stays inside its documented connection budget
	// (the test's own pool aside).
	var conns int
	if err := e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`).Scan(&conns); err != nil {
		t.Fatal(err)
	}
	conns -= int(e.pool.Stat().TotalConns())
	const documented = 40 // README.md, "PostgreSQL connections"
	if conns > documented {
		t.Fatalf("the split deployment holds %d connections, more than the documented %d", conns, documented)
	}
	t.Logf("the split deployment holds %d PostgreSQL connections (at most %d documented)", conns, documented)

	// Every piece stops cleanly on SIGTERM and logs no error doing so.
	for _, name := range started {
		p := procs[name]
		if err := p.stop(t); err != nil {
			t.Errorf("chat %s: exit %v on SIGTERM", name, err)
		}
		if out := p.output(); strings.Contains(out, "level=ERROR") {
			t.Errorf("chat %s logged an error:\n%s", name, tail(out, 30))
		}
	}
}

// TestConnectionBudget: the sums README.md documents are the ones the
// processes are configured with.
func TestConnectionBudget(t *testing.T) {
	cfg, err := loadConfig(func(string) string { return "" }, false, false)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range []struct {
		name string
		p    parts
		want int
	}{
		{"api", parts{api: true, db: true, bus: true}, 10},
		{"gateway", parts{gateway: true, db: true, bus: true}, 10},
		{"worker persister", parts{workers: []string{"persister"}, db: true, bus: true}, 6},
		{"worker fanout", parts{workers: []string{"fanout"}, db: true, bus: true}, 6},
		{"worker thumbnailer", parts{workers: []string{"thumbnailer"}, db: true, bus: true}, 8},
		{"worker notifier", parts{workers: []string{"notifier"}, db: true, bus: true}, 6},
	} {
		got := budgetFor(cfg, c.p).total()
		if got != c.want {
			t.Errorf("chat %s may open %d connections; README.md says %d", c.name, got, c.want)
		}
		total += got
	}
	if total != 46 {
		t.Errorf("the split deployment may open %d connections; README.md says 46", total)
	}
	dev := budgetFor(cfg, parts{api: true, gateway: true, workers: events.Workers(), db: true, bus: true}).total()
	if dev != 28 {
		t.Errorf("chat dev may open %d connections; README.md says 28", dev)
	}
}

// TestCommandLineWithoutDatabase: help, version and bad arguments are
// answered without reading the database, which here is unreachable.
func TestCommandLineWithoutDatabase(t *testing.T) {
	closed := freeAddr(t) // nothing listens there
	env := []string{"DATABASE_URL=postgres://postgres@" + closed + "/chat?sslmode=disable", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	chat := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(chatBin, args...)
		cmd.Env = env
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	for _, c := range commands() {
		for _, help := range []string{"--help", "-h"} {
			code, out := chat(c.name, help)
			if code != 0 || !strings.HasPrefix(out, "usage: chat "+c.name) || !strings.Contains(out, c.summary) {
				t.Errorf("chat %s %s: exit %d\n%s", c.name, help, code, out)
			}
		}
		if code, out := chat("help", c.name); code != 0 || !strings.HasPrefix(out, "usage: chat "+c.name) {
			t.Errorf("chat help %s: exit %d\n%s", c.name, code, out)
		}
	}
	if code, out := chat("token", "--help"); !strings.Contains(out, "-user") || code != 0 {
		t.Errorf("chat token --help does not describe --user (exit %d):\n%s", code, out)
	}
	if code, out := chat("version"); code != 0 || !strings.HasPrefix(out, "chat ") || !strings.Contains(out, "go1.") {
		t.Errorf("chat version: exit %d: %s", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "bogus"}, `unknown worker "bogus"`},
		{[]string{"worker"}, "exactly one NAME"},
		{[]string{"replay", "--worker", "bogus", "--since", "1h"}, `--worker "bogus"`},
		{[]string{"replay", "--worker", "persister"}, "--since"},
		{[]string{"deadletters"}, "want: deadletters"},
		{[]string{"deadletters", "redrive", "x"}, `ID "x" is not a number`},
		{[]string{"deadletters", "redrive"}, "redrive takes the ID of one dead letter"},
		{[]string{"deadletters", "purge", "0"}, "dead letter ids are positive"},
		{[]string{"api", "extra"}, `unexpected argument "extra"`},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"token", "--nope"}, "flag provided but not defined"},
	} {
		code, out := chat(c.args...)
		if code != 2 || !strings.Contains(out, c.want) || strings.Contains(out, "connect") {
			t.Errorf("chat %s: exit %d, want 2 and %q without a connection attempt:\n%s", strings.Join(c.args, " "), code, c.want, out)
		}
	}
}

// TestPoolParametersInDatabaseURL: pgxpool's pool_* parameters in
// DATABASE_URL configure the pool and reach neither the maintenance
// connection (migrate) nor the LISTEN connection: with the fallback poll at
// an hour, a worker in another process still gets the API's events at once.
func TestPoolParametersInDatabaseURL(t *testing.T) {
	e := newEnv(t)
	sep := "?"
	if strings.Contains(e.dbURL, "?") {
		sep = "&"
	}
	e.extra = append(e.extra, "DATABASE_URL="+e.dbURL+sep+"pool_max_conns=6&pool_min_conns=1", "CHAT_BUS_FALLBACK_POLL=1h")
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate with pool parameters exited %d", code)
	}
	e.waitHTTP(e.start("api"))
	worker := e.start("worker", "persister")
	waitUntil(t, "the worker listens", func() bool {
		return count(t, e.pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`) >= 2
	})
	sent := e.send(1, 2, "woken, not polled")
	if ms := e.messages(2, sent.ConversationID, 1); ms[0].ID != sent.ID {
		t.Fatalf("stored %s, want %s", ms[0].ID, sent.ID)
	}
	if out := worker.output(); strings.Contains(out, "unrecognized configuration parameter") || strings.Contains(out, "notifications interrupted") {
		t.Fatalf("the worker's own connections got the pool parameters:\n%s", tail(out, 30))
	}
}

// TestDevStartsAndStopsQuietly: at the default log level a clean start
// shows the banner without the consumer framework's life-cycle lines, and a
// clean stop logs no error.
func TestDevStartsAndStopsQuietly(t *testing.T) {
	e := newEnv(t)
	e.extra = append(e.extra, "CHAT_LOG_LEVEL=info")
	dev := e.start("dev")
	e.waitHTTP(dev)
	e.send(1, 2, "one message through every worker")
	_ = dev.cmd.Process.Signal(syscall.SIGINT) // Ctrl-C
	select {
	case <-dev.done:
	case <-time.After(30 * time.Second):
		t.Fatal("chat dev did not stop within 30s of SIGINT")
	}
	out := dev.output()
	if dev.exited != nil {
		t.Fatalf("chat dev exited with %v after SIGINT:\n%s", dev.exited, tail(out, 30))
	}
	if !strings.Contains(out, "Parley is running") {
		t.Fatalf("no banner:\n%s", out)
	}
	for _, bad := range []string{"level=ERROR", "component=watermill"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%s", bad, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 30 {
		t.Errorf("a clean start and stop printed %d lines:\n%s", n, out)
	}
	// Health of a stopped server: nothing answers.
	if resp, err := http.Get("http://" + e.http + "/health"); err == nil {
		resp.Body.Close()
		t.Fatal("something still answers after chat dev stopped")
	}
}
