package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/parleychat/parley/events"
)

func statusCmd(*flag.FlagSet) prepare {
	return func(args []string) (runner, error) {
		if err := noArgs(args); err != nil {
			return nil, err
		}
		return printStatus, nil
	}
}

// printStatus prints a table of the workers' queues.
func printStatus(ctx context.Context, x cmdEnv) error {
	a, err := operator(ctx, x)
	if err != nil {
		return err
	}
	defer a.Close()
	qs, err := a.transport.Status(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(x.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tDEPTH\tOLDEST\tDEAD LETTERS\tCONSUMERS")
	for _, q := range qs {
		oldest, consumers := "-", "-"
		if q.OldestAge >= 0 {
			oldest = q.OldestAge.Round(time.Millisecond).String()
		}
		if q.Consumers >= 0 {
			consumers = strconv.Itoa(q.Consumers)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", q.Worker, q.Depth, oldest, q.DeadLetters, consumers)
	}
	return tw.Flush()
}

// queueJSON is one worker of GET /status: the age in seconds, null when
// the transport cannot say, as consumers.
type queueJSON struct {
	events.QueueStatus
	OldestAgeSeconds *float64 `json:"oldest_age_seconds"`
	Consumers        *int     `json:"consumers"`
}

func statusBody(qs []events.QueueStatus) map[string]any {
	out := make([]queueJSON, len(qs))
	for i, q := range qs {
		out[i].QueueStatus = q
		if q.OldestAge >= 0 {
			s := q.OldestAge.Seconds()
			out[i].OldestAgeSeconds = &s
		}
		if q.Consumers >= 0 {
			c := q.Consumers
			out[i].Consumers = &c
		}
	}
	return map[string]any{"workers": out}
}
