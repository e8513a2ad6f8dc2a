// Command chat is the Parley chat backend: one binary whose subcommands run
// the whole system locally (dev), or its pieces separately (api, gateway,
// worker, s3), and operate it (migrate, replay, deadletters, token).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/tracing"
	"github.com/parleychat/parley/workers/persister"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// On Lambda the same binary is the function's bootstrap; the handler it
	// serves comes from the environment, not from arguments.
	if name := os.Getenv("CHAT_LAMBDA_HANDLER"); name != "" {
		os.Exit(runLambda(ctx, name, os.Getenv, os.Stderr))
	}
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// command is one subcommand. setup declares its flags on fs and returns
// prepare, which checks the parsed flags and arguments and returns what runs
// the command: --help and every mistake on the command line are answered
// before any configuration is read or any connection is made.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	// dev: development defaults (a fixed JWT secret if none is set).
	dev bool
	// needJWT: JWT_SECRET must be set.
	needJWT bool
	// noConfig: runs without reading the environment (version).
	noConfig bool
	setup    func(fs *flag.FlagSet) prepare
}

// prepare checks a command's positional arguments (its flags are parsed)
// and returns what runs it; a usageError says what is wrong.
type prepare func(args []string) (runner, error)

// runner runs a prepared command.
type runner func(ctx context.Context, x cmdEnv) error

// cmdEnv is what a running command gets.
type cmdEnv struct {
	cfg    Config
	logger *slog.Logger
	stdout io.Writer
}

func commands() []command {
	return []command{
		{name: "dev", dev: true, needJWT: true,
			summary: "migrate, then run the API, the WebSocket gateway, the embedded S3 and every worker in one process",
			setup:   server(parts{api: true, gateway: true, workers: events.Workers(), db: true, bus: true, migrate: true, oneAddr: true, demo: true})},
		{name: "api", needJWT: true,
			summary: "run the REST API on CHAT_HTTP_ADDR",
			setup:   server(parts{api: true, db: true, bus: true})},
		{name: "gateway", needJWT: true,
			summary: "run the local WebSocket gateway (/ws on CHAT_GATEWAY_ADDR) and its management API (CHAT_GATEWAY_ADMIN_ADDR)",
			setup:   server(parts{gateway: true, db: true, bus: true})},
		{name: "worker", args: "NAME",
			summary: "run one worker: " + strings.Join(events.Workers(), ", "),
			setup:   workerCmd},
		{name: "s3",
			summary: "run the embedded S3 server on CHAT_S3_ADDR, objects under CHAT_DATA_DIR",
			setup:   server(parts{s3: true})},
		{name: "migrate",
			summary: "create the database if missing and apply migrations",
			setup:   migrateCmd},
		{name: "replay",
			summary: "re-deliver archived events to one worker (with CHAT_TRANSPORT=aws: start an EventBridge archive replay)",
			setup:   replayCmd},
		{name: "deadletters", args: "list | redrive [ID] | purge [ID]",
			summary: "list the events a worker gave up on, put them back on their worker's queue (with CHAT_TRANSPORT=aws, all without an ID), or delete them",
			setup:   deadLettersCmd},
		{name: "reports", args: "list",
			summary: "list the reports users filed for moderation, newest first, with the reported content as it was (reads DATABASE_URL: RDS on AWS)",
			setup:   reportsCmd},
		{name: "status",
			summary: "print each worker's queue: depth, oldest event's age, dead letters, consumers (with CHAT_TRANSPORT=aws: CHAT_QUEUE_URL's)",
			setup:   statusCmd},
		{name: "archive", args: "prune",
			summary: "delete archived events older than CHAT_ARCHIVE_RETENTION (or --before) in short batches",
			setup:   pruneCmd(archivePruning())},
		{name: "sync", args: "prune | new-epoch",
			summary: "prune: delete sync feed entries older than CHAT_SYNC_RETENTION (or --before) in short batches (the persister's process does it every CHAT_SYNC_PRUNE_INTERVAL); new-epoch: give every user's feed a new epoch, after restoring the database from a backup, so that clients reload instead of trusting positions the restore took back",
			setup:   syncCmd},
		{name: "token", dev: true, needJWT: true,
			summary: "print a signed JWT for a user (development)",
			setup:   tokenCmd},
		{name: "version", noConfig: true,
			summary: "print the version and build information",
			setup:   versionCmd},
	}
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: chat <command> [flags]\n\ncommands:\n")
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	_ = tw.Flush()
	b.WriteString("\n'chat <command> --help' describes one command. Configuration comes from the environment; see README.md.\n")
	return b.String()
}

// commandUsage describes one command and its flags.
func commandUsage(c command, fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: chat %s", c.name)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		b.WriteString(" [flags]")
	}
	if c.args != "" {
		b.WriteString(" " + c.args)
	}
	fmt.Fprintf(&b, "\n\n%s\n", c.summary)
	if hasFlags {
		b.WriteString("\nflags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}

// run is main without the process: tests call it with their own context,
// environment and writers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help", "help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage())
			return 0
		}
		name, rest = rest[0], []string{"--help"}
	}
	c, ok := findCommand(name)
	if !ok {
		fmt.Fprintf(stderr, "chat: unknown command %q\n\n%s", name, usage())
		return 2
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	prep := c.setup(fs)
	err := fs.Parse(rest)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, commandUsage(c, fs))
		return 0
	}
	var runCmd runner
	if err == nil {
		runCmd, err = prep(fs.Args())
	}
	if err != nil {
		fmt.Fprintf(stderr, "chat %s: %v\n\n%s", c.name, err, commandUsage(c, fs))
		return 2
	}
	x := cmdEnv{stdout: stdout}
	if !c.noConfig {
		cfg, err := loadConfig(getenv, c.dev, c.needJWT)
		if err != nil {
			fmt.Fprintf(stderr, "chat %s: invalid configuration:\n%v\n", c.name, err)
			return 2
		}
		x.cfg, x.logger = cfg, newLogger(cfg, stderr)
	} else {
		x.logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if err := runCmd(ctx, x); err != nil {
		// A mistake only the configuration reveals (what a transport's
		// IDs look like), found before anything was opened.
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "chat %s: %v\n\n%s", c.name, err, commandUsage(c, fs))
			return 2
		}
		x.logger.Error("chat "+c.name+" failed", "err", err)
		return 1
	}
	return 0
}

// usageError is a mistake on the command line.
type usageError struct{ error }

// noArgs refuses positional arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", args[0])}
	}
	return nil
}

// fixed prepares a command that takes no positional arguments.
func fixed(r runner) prepare {
	return func(args []string) (runner, error) { return r, noArgs(args) }
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	if cfg.Tracing.On() {
		h = tracing.LogHandler{Handler: h}
	}
	return slog.New(h)
}

// server runs a long-lived process made of p.
func server(p parts) func(*flag.FlagSet) prepare {
	return func(*flag.FlagSet) prepare {
		return fixed(func(ctx context.Context, x cmdEnv) error { return runServer(ctx, x, p) })
	}
}

func workerCmd(*flag.FlagSet) prepare {
	return func(args []string) (runner, error) {
		if len(args) != 1 {
			return nil, usageError{errors.New("worker takes exactly one NAME")}
		}
		if _, ok := events.RouteFor(args[0]); !ok {
			return nil, usageError{unknownWorker(args[0])}
		}
		return func(ctx context.Context, x cmdEnv) error {
			return runServer(ctx, x, parts{workers: args, db: true, bus: true})
		}, nil
	}
}

func runServer(ctx context.Context, x cmdEnv, p parts) error {
	if p.oneAddr && x.cfg.S3Endpoint == "" {
		p.s3 = true // chat dev serves its own media
	}
	a, err := openApp(ctx, x.cfg, x.logger, p)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.listen(p); err != nil {
		return err
	}
	if x.cfg.DevMode {
		printDevBanner(x.stdout, a, x.cfg)
	}
	x.logger.Info("started", a.startedAttrs(p)...)
	err = a.run(ctx, p)
	if err != nil {
		return err
	}
	x.logger.Info("stopped")
	return nil
}

// startedAttrs says what the process serves, where, and how many
// PostgreSQL connections it may open.
func (a *App) startedAttrs(p parts) []any {
	attrs := []any{"transport", a.cfg.Transport}
	if a.httpLn != nil {
		attrs = append(attrs, "http", a.httpLn.Addr().String())
	}
	if a.gatewayLn != nil {
		attrs = append(attrs, "websocket", a.gatewayLn.Addr().String())
	}
	if a.adminLn != nil {
		attrs = append(attrs, "management", a.adminLn.Addr().String(), "gateway_id", a.gatewayID)
	}
	if a.s3Ln != nil {
		attrs = append(attrs, "s3", a.s3Ln.Addr().String())
	}
	if a.metricsLn != nil {
		attrs = append(attrs, "metrics", a.metricsLn.Addr().String())
	}
	if len(p.workers) > 0 {
		attrs = append(attrs, "workers", strings.Join(p.workers, ","))
	}
	if n := a.budget.total(); n > 0 {
		attrs = append(attrs, "max_db_connections", n)
	}
	if (p.api || p.gateway) && a.media == nil {
		attrs = append(attrs, "media", "off (set CHAT_S3_BUCKET)")
	}
	return attrs
}

func printDevBanner(w io.Writer, a *App, cfg Config) {
	base := "http://" + a.httpLn.Addr().String()
	fmt.Fprintf(w, `
Parley is running (development mode).
  Demo client   %[1]s/?user=1 and %[1]s/?user=2 in two windows
  REST API      %[1]s/api/v1/chat
  WebSocket     ws://%[4]s/ws?token=TOKEN
  Health        %[1]s/health
  Management    %[5]s/@connections/{id}  (loopback only, with CHAT_GATEWAY_ADMIN_SECRET)
  Embedded S3   %[6]s  (bucket %[7]s)
  Database      %[2]s
  Data dir      %[3]s
`, base, redact(cfg.DatabaseURL), cfg.DataDir, a.httpLn.Addr(), a.managementURL, s3URL(a), cfg.S3Bucket)
	if cfg.DevSecretInUse {
		fmt.Fprintf(w, "\n  JWT_SECRET is not set: using the fixed development secret. Never use it in production.\n")
	}
	getToken := "dist/chat token --user 1"
	if cfg.JWT.JWKSURL != "" {
		getToken = "from your identity provider (tokens are verified against " + cfg.JWT.JWKSURL + ")"
	}
	fmt.Fprintf(w, `
Get a token:    %s
Try it:         curl -H "Authorization: Bearer $TOKEN" %s/api/v1/chat/conversations
Stop with Ctrl-C.

`, getToken, base)
}

func migrateCmd(*flag.FlagSet) prepare {
	return fixed(func(ctx context.Context, x cmdEnv) error {
		a, err := openApp(ctx, x.cfg, x.logger, parts{db: true, bus: x.cfg.Transport == transportPostgres, migrate: true})
		if err != nil {
			return err
		}
		a.Close()
		fmt.Fprintln(x.stdout, "migrations applied")
		return nil
	})
}

// operator opens what a one-shot operator command needs: the transport,
// and PostgreSQL when the transport lives there.
func operator(ctx context.Context, x cmdEnv) (*App, error) {
	return openApp(ctx, x.cfg, x.logger, parts{db: x.cfg.Transport == transportPostgres, bus: true})
}

func replayCmd(fs *flag.FlagSet) prepare {
	worker := fs.String("worker", "", "worker to re-deliver to: "+strings.Join(events.Workers(), ", "))
	since := fs.String("since", "", "RFC 3339 time or a duration ago, e.g. 2h")
	until := fs.String("until", "", "RFC 3339 time (default: now)")
	return func(args []string) (runner, error) {
		if err := noArgs(args); err != nil {
			return nil, err
		}
		if _, ok := events.RouteFor(*worker); !ok {
			return nil, usageError{fmt.Errorf("--worker %q: want one of %s", *worker, strings.Join(events.Workers(), ", "))}
		}
		now := time.Now()
		from, err := parseTime(*since, now)
		if err != nil || *since == "" {
			return nil, usageError{fmt.Errorf("--since %q: want an RFC 3339 time or a duration like 2h", *since)}
		}
		var to time.Time
		if *until != "" {
			if to, err = parseTime(*until, now); err != nil {
				return nil, usageError{fmt.Errorf("--until %q: %v", *until, err)}
			}
		}
		return func(ctx context.Context, x cmdEnv) error { return replay(ctx, x, *worker, from, to) }, nil
	}
}

func replay(ctx context.Context, x cmdEnv, worker string, from, to time.Time) error {
	a, err := operator(ctx, x)
	if err != nil {
		return err
	}
	defer a.Close()
	msg, err := a.transport.Replay(ctx, worker, from, to)
	if err != nil {
		return err
	}
	fmt.Fprintln(x.stdout, msg)
	return nil
}

// pruning is what a prune command deletes: `chat archive prune`,
// `chat sync prune`.
type pruning struct {
	command, what, retentionVar string
	retention                   func(Config) time.Duration
	prune                       func(context.Context, cmdEnv, time.Time) (int64, error)
}

func archivePruning() pruning {
	return pruning{command: "archive", what: "archived events", retentionVar: "CHAT_ARCHIVE_RETENTION",
		retention: func(c Config) time.Duration { return c.ArchiveRetention },
		prune: func(ctx context.Context, x cmdEnv, cutoff time.Time) (int64, error) {
			a, err := operator(ctx, x)
			if err != nil {
				return 0, err
			}
			defer a.Close()
			return a.transport.PruneArchive(ctx, cutoff)
		}}
}

// syncPruning prunes the sync feed, which is PostgreSQL's on either
// transport.
func syncPruning() pruning {
	return pruning{command: "sync", what: "sync feed entries", retentionVar: "CHAT_SYNC_RETENTION",
		retention: func(c Config) time.Duration { return c.SyncRetention },
		prune: func(ctx context.Context, x cmdEnv, cutoff time.Time) (int64, error) {
			a, err := openApp(ctx, x.cfg, x.logger, parts{db: true})
			if err != nil {
				return 0, err
			}
			defer a.Close()
			return persister.PruneFeed(ctx, a.pool, cutoff, x.cfg.SyncPruneBatch)
		}}
}

func pruneCmd(p pruning) func(fs *flag.FlagSet) prepare {
	return func(fs *flag.FlagSet) prepare {
		before := fs.String("before", "", "RFC 3339 time or a duration ago, e.g. 720h (default: "+p.retentionVar+" ago)")
		return func(args []string) (runner, error) {
			if len(args) != 1 || args[0] != "prune" {
				return nil, usageError{fmt.Errorf("want: %s [--before TIME] prune", p.command)}
			}
			var cutoff time.Time
			if *before != "" {
				t, err := parseTime(*before, time.Now())
				if err != nil {
					return nil, usageError{fmt.Errorf("--before %q: want an RFC 3339 time or a duration like 720h", *before)}
				}
				cutoff = t
			}
			return func(ctx context.Context, x cmdEnv) error {
				if cutoff.IsZero() {
					if p.retention(x.cfg) == 0 {
						return fmt.Errorf("%s=0 keeps all %s: pass --before to prune anyway", p.retentionVar, p.what)
					}
					cutoff = time.Now().Add(-p.retention(x.cfg))
				}
				n, err := p.prune(ctx, x, cutoff)
				if err != nil {
					return err
				}
				fmt.Fprintf(x.stdout, "pruned %d %s from before %s\n", n, p.what, cutoff.UTC().Format(time.RFC3339))
				return nil
			}, nil
		}
	}
}

// syncCmd is `chat sync prune` and `chat sync new-epoch`.
func syncCmd(fs *flag.FlagSet) prepare {
	prune := pruneCmd(syncPruning())(fs)
	return func(args []string) (runner, error) {
		switch {
		case len(args) == 1 && args[0] == "prune":
			return prune(args)
		case len(args) != 1 || args[0] != "new-epoch":
			return nil, usageError{fmt.Errorf("want: sync [--before TIME] prune, or sync new-epoch")}
		case fs.Lookup("before").Value.String() != "":
			return nil, usageError{fmt.Errorf("--before is for sync prune")}
		}
		return func(ctx context.Context, x cmdEnv) error {
			a, err := openApp(ctx, x.cfg, x.logger, parts{db: true})
			if err != nil {
				return err
			}
			defer a.Close()
			n, err := persister.RenewFeedEpochs(ctx, a.pool, x.cfg.SyncPruneBatch)
			if err != nil {
				return err
			}
			fmt.Fprintf(x.stdout, "gave %d sync feeds a new epoch\n", n)
			return nil
		}, nil
	}
}

func parseTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

func deadLettersCmd(fs *flag.FlagSet) prepare {
	worker := fs.String("worker", "", "list, purge: only this worker's (on AWS the queue says whose)")
	all := fs.Bool("all", false, "list: include redriven ones (PostgreSQL)")
	return func(args []string) (runner, error) {
		op := ""
		if len(args) > 0 {
			op = args[0]
		}
		// What an ID looks like depends on the transport: checked once
		// the configuration is read (checkDeadLetterID).
		id := ""
		switch {
		case len(args) == 1 && (op == "list" || op == "purge" || op == "redrive"):
		case len(args) == 2 && (op == "redrive" || op == "purge"):
			id = args[1]
		default:
			return nil, usageError{errors.New("want: deadletters [flags] list, deadletters redrive [ID], or deadletters [--worker NAME] purge [ID]")}
		}
		if *worker != "" {
			if _, ok := events.RouteFor(*worker); !ok {
				return nil, usageError{unknownWorker(*worker)}
			}
		}
		return func(ctx context.Context, x cmdEnv) error { return deadLetters(ctx, x, op, id, *worker, *all) }, nil
	}
}

// deadLetters lists, redrives or purges dead letters.
func deadLetters(ctx context.Context, x cmdEnv, op, id, worker string, all bool) error {
	if op != "list" {
		if err := checkDeadLetterID(x.cfg.Transport, op, id); err != nil {
			return err
		}
	}
	a, err := operator(ctx, x)
	if err != nil {
		return err
	}
	defer a.Close()
	switch op {
	case "redrive":
		msg, err := a.transport.Redrive(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintln(x.stdout, msg)
		return nil
	case "purge":
		msg, err := a.transport.PurgeDeadLetters(ctx, worker, id)
		if err != nil {
			return err
		}
		fmt.Fprintln(x.stdout, msg)
		return nil
	}
	rows, err := a.transport.DeadLetters(ctx, worker, all)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(x.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWORKER\tEVENT\tTYPE\tATTEMPTS\tFAILED AT\tREDRIVEN\tERROR")
	for _, r := range rows {
		redriven, failed := "-", "-"
		if r.RedrivenAt != nil {
			redriven = r.RedrivenAt.Format(time.RFC3339)
		}
		if !r.FailedAt.IsZero() {
			failed = r.FailedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, orDash(r.Worker), orDash(r.EventID), orDash(r.EventType), r.Attempts,
			failed, redriven, orDash(r.Error))
	}
	return tw.Flush()
}

// orDash shows an unknown field of a table.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tokenCmd(fs *flag.FlagSet) prepare {
	user := fs.Int64("user", 0, "user id (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	return func(args []string) (runner, error) {
		if err := noArgs(args); err != nil {
			return nil, err
		}
		if *user <= 0 {
			return nil, usageError{errors.New("--user must be a positive user id")}
		}
		return func(_ context.Context, x cmdEnv) error {
			if x.cfg.JWT.JWKSURL != "" {
				return errors.New("chat token signs HS256 development tokens, which a server with CHAT_JWKS_URL refuses: get a token from your identity provider")
			}
			t, err := auth.Issue([]byte(x.cfg.JWTSecret), *user, *ttl, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(x.stdout, t)
			return nil
		}, nil
	}
}

func versionCmd(*flag.FlagSet) prepare {
	return fixed(func(_ context.Context, x cmdEnv) error {
		fmt.Fprintln(x.stdout, versionString())
		return nil
	})
}

// versionString is the module version (a tagged install) or the commit the
// binary was built from, with the Go version.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "chat (no build information)"
	}
	version := bi.Main.Version
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	out := "chat " + version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " commit " + rev
		if modified {
			out += "+modified"
		}
		if at != "" {
			out += " (" + at + ")"
		}
	}
	return out + " " + bi.GoVersion
}

func s3URL(a *App) string {
	if a.s3Ln == nil {
		return "(off)"
	}
	return "http://" + a.s3Ln.Addr().String()
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}
