package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley/db"
)

// maxShownContent bounds the reported text shown per row; the database
// keeps all of it.
const maxShownContent = 80

func reportsCmd(fs *flag.FlagSet) prepare {
	user := fs.Int64("user", 0, "only reports of this user")
	since := fs.String("since", "720h", "RFC 3339 time or a duration ago")
	limit := fs.Int("limit", 100, "at most this many reports (1-10000)")
	return func(args []string) (runner, error) {
		if len(args) != 1 || args[0] != "list" {
			return nil, usageError{errors.New("want: reports [--user ID] [--since TIME] [--limit N] list")}
		}
		if *user < 0 {
			return nil, usageError{errors.New("--user must be a positive user id")}
		}
		if *limit < 1 || *limit > 10000 {
			return nil, usageError{fmt.Errorf("--limit %d: want 1 to 10000", *limit)}
		}
		from, err := parseTime(*since, time.Now())
		if err != nil {
			return nil, usageError{fmt.Errorf("--since %q: want an RFC 3339 time or a duration like 720h", *since)}
		}
		return func(ctx context.Context, x cmdEnv) error {
			// Reports live in PostgreSQL on both transports (on AWS,
			// DATABASE_URL names the RDS database).
			a, err := openApp(ctx, x.cfg, x.logger, parts{db: true})
			if err != nil {
				return err
			}
			defer a.Close()
			rows, err := db.New(a.pool).ListReports(ctx, db.ListReportsParams{ReportedUserID: *user, Since: from, PageLimit: int32(*limit)})
			if err != nil {
				return fmt.Errorf("list reports: %w", err)
			}
			tw := tabwriter.NewWriter(x.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tREPORTED AT\tREPORTER\tREPORTED USER\tREASON\tMESSAGE\tSENT AT\tCONTENT\tDETAILS")
			for _, r := range rows {
				msg, sent := "-", "-"
				if r.MessageID != nil {
					msg = r.MessageID.String()
				}
				if r.MessageCreatedAt != nil {
					sent = r.MessageCreatedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.CreatedAt.UTC().Format(time.RFC3339),
					r.ReporterID, r.ReportedUserID, r.Reason, msg, sent, reportedContent(r), orDash(shown(r.Details)))
			}
			fmt.Fprintf(tw, "%d reports\n", len(rows))
			return tw.Flush()
		}, nil
	}
}

// reportedContent is the snapshot of a reported message on one line.
func reportedContent(r db.Report) string {
	switch {
	case r.ContentType == nil:
		return "-"
	case r.TextContent != nil && *r.ContentType == "text":
		return shown(*r.TextContent)
	case r.MediaKey != nil:
		return fmt.Sprintf("[%s %s]", *r.ContentType, *r.MediaKey)
	}
	return "[" + *r.ContentType + "]"
}

// shown quotes text on one line (tabs and newlines escaped, so the table
// keeps its columns), cut to maxShownContent characters.
func shown(s string) string {
	if s == "" {
		return ""
	}
	cut := false
	if utf8.RuneCountInString(s) > maxShownContent {
		s, cut = string([]rune(s)[:maxShownContent]), true
	}
	q := strconv.Quote(s)
	if cut {
		q = strings.TrimSuffix(q, `"`) + `…"`
	}
	return q
}
