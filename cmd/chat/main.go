// Command chat is the Parley chat backend: one binary whose subcommands run
// the whole system locally (dev), or its pieces separately (api, worker), and
// operate it (migrate, replay, deadletters, token).
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
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/parleychat/parley/api/auth"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge"
)

const usage = `usage: chat <command> [flags]

commands:
  dev                      migrate, then run the API, the WebSocket gateway, the embedded
                           S3 and every worker in one process
  api                      run the REST API
  gateway                  run the local WebSocket gateway (/ws) and its management API
  worker NAME              run one worker: persister, fanout or thumbnailer
  migrate                  apply database migrations
  replay --worker NAME --since TIME [--until TIME]
                           re-deliver archived events to one worker (with
                           CHAT_TRANSPORT=aws: start an EventBridge archive replay)
  deadletters list [--worker NAME] [--all]
  deadletters redrive ID   put a dead letter back on its worker's queue
  token --user ID [--ttl 24h]
                           print a signed JWT for a user (development)

Configuration comes from the environment; see README.md.
`

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

// run is main without the process: tests call it with their own context,
// environment and writers.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := args[0], args[1:]
	needJWT := cmd == "dev" || cmd == "token" || cmd == "api" || cmd == "gateway"
	cfg, err := loadConfig(getenv, cmd == "dev" || cmd == "token", needJWT)
	if err != nil {
		fmt.Fprintf(stderr, "chat %s: invalid configuration:\n%v\n", cmd, err)
		return 2
	}
	logger := newLogger(cfg, stderr)
	if err := dispatch(ctx, cmd, rest, cfg, logger, stdout); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "chat %s: %v\n\n%s", cmd, err, usage)
			return 2
		}
		logger.Error("chat "+cmd+" failed", "err", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func dispatch(ctx context.Context, cmd string, args []string, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	switch cmd {
	case "dev":
		return runServer(ctx, cfg, logger, stdout, parts{api: true, gateway: true, workers: workerNames}, true)
	case "api":
		return runServer(ctx, cfg, logger, stdout, parts{api: true}, false)
	case "gateway":
		return runServer(ctx, cfg, logger, stdout, parts{gateway: true}, false)
	case "worker":
		if len(args) != 1 {
			return usageError{errors.New("worker takes exactly one NAME")}
		}
		return runServer(ctx, cfg, logger, stdout, parts{workers: args}, false)
	case "migrate":
		a, err := openApp(ctx, cfg, logger, true)
		if err != nil {
			return err
		}
		a.Close()
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "replay":
		return replay(ctx, cfg, logger, args, stdout)
	case "deadletters":
		return deadLetters(ctx, cfg, logger, args, stdout)
	case "token":
		return token(cfg, args, stdout)
	default:
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

func runServer(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer, p parts, migrate bool) error {
	a, err := openApp(ctx, cfg, logger, migrate)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.listen(p); err != nil {
		return err
	}
	if cfg.DevMode {
		printDevBanner(stdout, a, cfg)
	}
	logger.Info("started", "api", p.api, "workers", p.workers, "transport", cfg.Transport)
	err = a.run(ctx, p)
	logger.Info("stopped")
	return err
}

func printDevBanner(w io.Writer, a *App, cfg Config) {
	base := "http://" + a.httpLn.Addr().String()
	fmt.Fprintf(w, `
Parley is running (development mode).
  REST API      %[1]s/api/v1/chat
  WebSocket     ws://%[4]s/ws?token=TOKEN
  Health        %[1]s/health
  Management    %[5]s/@connections/{id}  (loopback only)
  Embedded S3   %[6]s  (bucket %[7]s)
  Database      %[2]s
  Data dir      %[3]s
`, base, redact(cfg.DatabaseURL), cfg.DataDir, a.httpLn.Addr(), a.cfg.WSManagementURL, s3URL(a), cfg.S3Bucket)
	if cfg.DevSecretInUse {
		fmt.Fprintf(w, "\n  JWT_SECRET is not set: using the fixed development secret. Never use it in production.\n")
	}
	fmt.Fprintf(w, `
Get a token:    go run ./cmd/chat token --user 1
Try it:         curl -H "Authorization: Bearer $TOKEN" %s/api/v1/chat/conversations
Stop with Ctrl-C.

`, base)
}

func replay(ctx context.Context, cfg Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	worker := fs.String("worker", "", "worker to re-deliver to")
	since := fs.String("since", "", "RFC 3339 time or a duration ago, e.g. 2h")
	until := fs.String("until", "", "RFC 3339 time (default: now)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if _, ok := events.RouteFor(*worker); !ok {
		return usageError{fmt.Errorf("--worker %q: want persister, fanout or thumbnailer", *worker)}
	}
	from, err := parseTime(*since, time.Now())
	if err != nil || *since == "" {
		return usageError{fmt.Errorf("--since %q: want an RFC 3339 time or a duration like 2h", *since)}
	}
	var to time.Time
	if *until != "" {
		if to, err = parseTime(*until, time.Now()); err != nil {
			return usageError{fmt.Errorf("--until %q: %v", *until, err)}
		}
	}
	if cfg.Transport == "aws" {
		return replayAWS(ctx, cfg, *worker, from, to, stdout)
	}
	a, err := openApp(ctx, cfg, logger, false)
	if err != nil {
		return err
	}
	defer a.Close()
	n, err := a.bus.Replay(ctx, *worker, from, to)
	if err != nil {
		return err
	}
	if err := a.waker.Flush(ctx); err != nil {
		logger.Warn("running workers will find the replayed events at their next poll", "err", err)
	}
	fmt.Fprintf(stdout, "re-delivered %d events to %s\n", n, *worker)
	return nil
}

// replayAWS starts an EventBridge archive replay delivered only through the
// worker's rule. It needs AWS credentials and no database, so an operator can
// run it from any machine. The replay runs on in EventBridge after this
// returns.
func replayAWS(ctx context.Context, cfg Config, worker string, from, to time.Time, stdout io.Writer) error {
	var errs []error
	for _, v := range []struct{ name, value, hint string }{
		{"CHAT_EVENT_ARCHIVE_ARN", cfg.ArchiveARN, "the stack output EventArchiveArn"},
		{"CHAT_EVENT_BUS_ARN", cfg.EventBusARN, "the stack output EventBusArn"},
		{"CHAT_RULE_ARN_PREFIX", cfg.RuleARNPrefix, "the workers' rule ARN without the worker name: " + ruleARNPrefixExample},
	} {
		if v.value == "" {
			errs = append(errs, fmt.Errorf("%s is required for chat replay with CHAT_TRANSPORT=aws (%s)", v.name, v.hint))
		}
	}
	if p := cfg.RuleARNPrefix; p != "" && (!strings.HasPrefix(p, "arn:") || !strings.Contains(p, ":rule/")) {
		errs = append(errs, fmt.Errorf("CHAT_RULE_ARN_PREFIX=%q is not a rule ARN prefix like %s", p, ruleARNPrefixExample))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	client, err := eventbridge.NewClient(ctx, cfg.awsAt(cfg.EventBridgeURL))
	if err != nil {
		return fmt.Errorf("EventBridge client: %w", err)
	}
	rule := cfg.RuleARNPrefix + worker
	name, err := eventbridge.Replay(ctx, client, eventbridge.ReplayRequest{
		ArchiveARN: cfg.ArchiveARN, BusARN: cfg.EventBusARN, RuleARNs: []string{rule},
		Since: from, Until: to,
		// Unique per account and region, and says what it was for.
		Name: worker + "-" + uuid.NewString(),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "started replay %s to %s (rule %s)\nfollow it with: aws events describe-replay --replay-name %s\n", name, worker, rule, name)
	return nil
}

// ruleARNPrefixExample is the form of CHAT_RULE_ARN_PREFIX: the stack names
// each worker's rule parley-<stage>-<worker>, on the bus parley-<stage>.
const ruleARNPrefixExample = "arn:aws:events:REGION:ACCOUNT:rule/parley-STAGE/parley-STAGE-"

func parseTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

func deadLetters(ctx context.Context, cfg Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("deadletters needs list or redrive")}
	}
	if cfg.Transport == "aws" {
		return errors.New("with CHAT_TRANSPORT=aws dead letters are in each worker's SQS dead-letter queue (parley-<stage>-<worker>-dlq): " +
			"inspect them with aws sqs receive-message and move them back with aws sqs start-message-move-task (see DEPLOY.md)")
	}
	a, err := openApp(ctx, cfg, logger, false)
	if err != nil {
		return err
	}
	defer a.Close()
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("deadletters list", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		worker := fs.String("worker", "", "only this worker")
		all := fs.Bool("all", false, "include redriven ones")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err}
		}
		rows, err := a.bus.DeadLetters(ctx, *worker, *all, 1000)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tWORKER\tEVENT\tTYPE\tATTEMPTS\tFAILED AT\tREDRIVEN\tERROR")
		for _, r := range rows {
			redriven := "-"
			if r.RedrivenAt != nil {
				redriven = r.RedrivenAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Worker, r.EventID, r.EventType, r.Attempts,
				r.FailedAt.Format(time.RFC3339), redriven, r.Error)
		}
		return tw.Flush()
	case "redrive":
		if len(args) != 2 {
			return usageError{errors.New("deadletters redrive takes one ID")}
		}
		id, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return usageError{fmt.Errorf("ID %q is not a number", args[1])}
		}
		if err := a.bus.Redrive(ctx, id); err != nil {
			return err
		}
		if err := a.waker.Flush(ctx); err != nil {
			logger.Warn("the worker will find the event at its next poll", "err", err)
		}
		fmt.Fprintf(stdout, "dead letter %d redriven\n", id)
		return nil
	default:
		return usageError{fmt.Errorf("unknown deadletters command %q", args[0])}
	}
}

func token(cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.Int64("user", 0, "user id")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *user <= 0 {
		return usageError{errors.New("--user must be a positive user id")}
	}
	t, err := auth.Issue([]byte(cfg.JWTSecret), *user, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
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
