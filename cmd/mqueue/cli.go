package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/mqueue/mqueue/client"
)

// Exit codes of the client subcommands (documented in README "CLI" and
// `mqueue help`).
const (
	exitOK       = 0
	exitError    = 1 // the server refused, or could not be reached
	exitUsage    = 2 // bad arguments
	exitNotFound = 3 // no message came, or the queue is unknown
)

// cliCommands are the client subcommands run by runCLI.
var cliCommands = map[string]bool{"put": true, "get": true, "ack": true, "nack": true, "peek": true,
	"stats": true, "queues": true, "purge": true, "delete": true, "redrive": true, "tail": true}

// cliEnv is what a client subcommand reads besides its arguments.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// cliFlags are the flags shared by every client subcommand.
type cliFlags struct {
	url, token string
	json       bool
}

// parseInterspersed parses fs over args, allowing flags after positional
// arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// runCLI runs the client subcommand cmd and returns its exit code.
func runCLI(cmd string, args []string, env cliEnv) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet("mqueue "+cmd, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var cf cliFlags
	def := env.getenv("MQUEUE_URL")
	if def == "" {
		def = "http://localhost:8088"
	}
	fs.StringVar(&cf.url, "url", def, "server URL (env MQUEUE_URL)")
	fs.StringVar(&cf.token, "token", env.getenv("MQUEUE_AUTH_TOKEN"), "bearer token (env MQUEUE_AUTH_TOKEN)")
	fs.BoolVar(&cf.json, "json", false, "print JSON instead of a table")
	ttl := fs.Duration("ttl", 0, "put: time to live (e.g. 60s)")
	delay := fs.Duration("delay", 0, "put: delivery delay; nack: redelivery delay")
	sync := fs.Bool("sync", false, "put: answer after fsync")
	key := fs.String("key", "", "put: Idempotency-Key")
	lease := fs.Duration("lease", 0, "get: lease instead of taking for good (e.g. 30s)")
	wait := fs.Duration("wait", 0, "get: long poll up to this long (at most 30s)")
	maxN := fs.Int("max", 0, "get/peek/redrive: at most this many messages")
	from := fs.Uint64("from", 0, "peek: first id")
	yes := fs.Bool("yes", false, "purge/delete: do not ask")
	follow := fs.Bool("f", false, "tail: follow (the default; kept for habit)")
	interval := fs.Duration("interval", time.Second, "tail: poll interval")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	_ = follow
	c := client.New(cf.url, client.WithToken(cf.token), client.WithUserAgent("mqueue-cli/"+version))
	usage := func(format string) int {
		fmt.Fprintf(env.stderr, "usage: mqueue %s %s\n", cmd, format)
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "mqueue %s: %v\n", cmd, err)
		if errors.Is(err, client.ErrQueueNotFound) {
			return exitNotFound
		}
		return exitError
	}
	out := env.stdout
	switch cmd {
	case "put":
		if len(pos) < 1 || len(pos) > 2 {
			return usage("[--ttl D] [--delay D] [--sync] [--key K] QUEUE [BODY|-]")
		}
		var body []byte
		if len(pos) == 1 || pos[1] == "-" {
			if body, err = io.ReadAll(env.stdin); err != nil {
				return fail(fmt.Errorf("reading stdin: %w", err))
			}
		} else {
			body = []byte(pos[1])
		}
		id, err := c.Enqueue(ctx, pos[0], body, client.EnqueueOptions{TTL: *ttl, Delay: *delay, Sync: *sync, IdempotencyKey: *key})
		if err != nil {
			return fail(err)
		}
		if cf.json {
			return printJSON(out, map[string]any{"queue": pos[0], "id": id})
		}
		fmt.Fprintln(out, id)
	case "get":
		if len(pos) != 1 {
			return usage("QUEUE [--lease D] [--wait D] [--max N]")
		}
		n := max(*maxN, 1)
		var msgs []client.Message
		if *lease > 0 {
			msgs, err = c.LeaseBatch(ctx, pos[0], n, *lease, *wait)
		} else {
			msgs, err = c.DequeueBatch(ctx, pos[0], n, *wait)
		}
		if err != nil {
			return fail(err)
		}
		if len(msgs) == 0 {
			if cf.json {
				printJSON(out, map[string]any{"messages": []any{}})
			}
			return exitNotFound
		}
		if cf.json {
			return printJSON(out, map[string]any{"messages": jsonMessages(msgs)})
		}
		if len(msgs) == 1 && *lease == 0 {
			_, _ = out.Write(msgs[0].Body) // the body, byte for byte, for pipes
			return exitOK
		}
		printTable(out, msgs)
	case "ack", "nack":
		if len(pos) != 2 {
			return usage("QUEUE RECEIPT" + map[string]string{"ack": "", "nack": " [--delay D]"}[cmd])
		}
		if cmd == "ack" {
			err = c.Ack(ctx, pos[0], pos[1])
		} else {
			err = c.Nack(ctx, pos[0], pos[1], *delay)
		}
		if err != nil {
			return fail(err)
		}
	case "peek":
		if len(pos) != 1 {
			return usage("QUEUE [--max N] [--from ID]")
		}
		msgs, next, err := c.Peek(ctx, pos[0], client.PeekOptions{From: *from, Max: *maxN})
		if err != nil {
			return fail(err)
		}
		if cf.json {
			return printJSON(out, map[string]any{"messages": jsonMessages(msgs), "next": next})
		}
		printTable(out, msgs)
	case "stats":
		if len(pos) > 1 {
			return usage("[QUEUE]")
		}
		var all []client.Stats
		if len(pos) == 1 {
			s, err := c.Stats(ctx, pos[0])
			if err != nil {
				return fail(err)
			}
			all = []client.Stats{s}
		} else if all, err = c.AllStats(ctx); err != nil {
			return fail(err)
		}
		if cf.json {
			if len(pos) == 1 {
				return printJSON(out, all[0])
			}
			return printJSON(out, map[string]any{"queues": all})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tDEPTH\tIN_FLIGHT\tDELAYED\tNEXT_ID\tENQUEUED\tDEQUEUED\tEXPIRED\tDEAD\tDISK_BYTES")
		for _, s := range all {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Queue, s.Depth, s.InFlight, s.Delayed, s.NextID,
				s.EnqueuedTotal, s.DequeuedTotal, s.ExpiredTotal, s.DeadLetteredTotal, s.DiskBytes)
		}
		_ = tw.Flush()
	case "queues":
		if len(pos) != 0 {
			return usage("")
		}
		var all []client.QueueInfo
		after := ""
		for {
			page, next, err := c.Queues(ctx, after, 1000)
			if err != nil {
				return fail(err)
			}
			all = append(all, page...)
			if next == "" {
				break
			}
			after = next
		}
		if cf.json {
			return printJSON(out, map[string]any{"queues": all})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tDEPTH\tIN_FLIGHT\tDELAYED\tUNAVAILABLE")
		for _, q := range all {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%v\n", q.Name, q.Depth, q.InFlight, q.Delayed, q.Unavailable)
		}
		_ = tw.Flush()
	case "purge", "delete":
		if len(pos) != 1 {
			return usage("QUEUE [--yes]")
		}
		if !*yes {
			fmt.Fprintf(env.stderr, "mqueue %s: this removes every message of %q for good; add --yes\n", cmd, pos[0])
			return exitUsage
		}
		if cmd == "delete" {
			if err := c.Delete(ctx, pos[0]); err != nil {
				return fail(err)
			}
			return exitOK
		}
		n, err := c.Purge(ctx, pos[0])
		if err != nil {
			return fail(err)
		}
		if cf.json {
			return printJSON(out, map[string]any{"purged": n})
		}
		fmt.Fprintln(out, n)
	case "redrive":
		if len(pos) != 1 {
			return usage("QUEUE.dlq [--max N]")
		}
		n, err := c.Redrive(ctx, pos[0], *maxN)
		if err != nil {
			return fail(err)
		}
		if cf.json {
			return printJSON(out, map[string]any{"redriven": n})
		}
		fmt.Fprintln(out, n)
	case "tail":
		if len(pos) != 1 {
			return usage("[-f] QUEUE [--interval D]")
		}
		return tail(ctx, c, pos[0], *interval, cf.json, env)
	}
	return exitOK
}

// tail prints the messages of queue as they arrive, by id, with peeks
// (it takes nothing), until ctx ends. It starts after the newest message.
func tail(ctx context.Context, c *client.Client, queue string, interval time.Duration, asJSON bool, env cliEnv) int {
	st, err := c.Stats(ctx, queue)
	var from uint64 = 1
	if err == nil {
		from = st.NextID
	} else if !errors.Is(err, client.ErrQueueNotFound) {
		fmt.Fprintf(env.stderr, "mqueue tail: %v\n", err)
		return exitError
	}
	for {
		msgs, _, err := c.Peek(ctx, queue, client.PeekOptions{From: from, Max: 1000})
		if err != nil && ctx.Err() != nil {
			return exitOK
		}
		if err != nil && !errors.Is(err, client.ErrQueueNotFound) {
			fmt.Fprintf(env.stderr, "mqueue tail: %v\n", err)
			return exitError
		}
		for _, m := range msgs {
			if m.ID < from {
				continue
			}
			if asJSON {
				b, _ := json.Marshal(jsonMessages([]client.Message{m})[0])
				fmt.Fprintf(env.stdout, "%s\n", b)
			} else {
				fmt.Fprintf(env.stdout, "%d\t%s\n", m.ID, printable(m.Body))
			}
			from = m.ID + 1
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return exitOK
		case <-t.C:
		}
	}
}

type jsonMessage struct {
	ID             uint64 `json:"id"`
	Body           string `json:"body"`
	EnqueuedAt     int64  `json:"enqueued_at,omitempty"`
	ExpiresAt      int64  `json:"expires_at,omitempty"`
	DeliveryCount  int    `json:"delivery_count"`
	Receipt        string `json:"receipt,omitempty"`
	LeaseExpiresAt int64  `json:"lease_expires_at,omitempty"`
	State          string `json:"state,omitempty"`
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func jsonMessages(msgs []client.Message) []jsonMessage {
	out := make([]jsonMessage, len(msgs))
	for i, m := range msgs {
		out[i] = jsonMessage{ID: m.ID, Body: string(m.Body), EnqueuedAt: ms(m.EnqueuedAt), ExpiresAt: ms(m.ExpiresAt),
			DeliveryCount: m.DeliveryCount, Receipt: m.Receipt, LeaseExpiresAt: ms(m.LeaseExpiresAt), State: m.State}
	}
	return out
}

// printable shortens a body for a table line and escapes what is not text.
func printable(b []byte) string {
	s := fmt.Sprintf("%q", b)
	s = s[1 : len(s)-1]
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func printTable(w io.Writer, msgs []client.Message) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDELIVERIES\tSTATE\tRECEIPT\tBODY")
	for _, m := range msgs {
		state := m.State
		if state == "" {
			state = "-"
		}
		r := m.Receipt
		if r == "" {
			r = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", m.ID, m.DeliveryCount, state, r, printable(m.Body))
	}
	_ = tw.Flush()
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	if err := enc.Encode(v); err != nil {
		return exitError
	}
	return exitOK
}

// cliUsage is the client part of `mqueue help`.
const cliUsage = `
Client commands (server from --url or MQUEUE_URL, default http://localhost:8088;
token from --token or MQUEUE_AUTH_TOKEN; --json for scripts):
  mqueue put [--ttl D --delay D --sync --key K] QUEUE [BODY|-]   enqueue; prints the id
  mqueue get QUEUE [--lease D] [--wait D] [--max N]   take (or lease) messages
  mqueue ack QUEUE RECEIPT | nack QUEUE RECEIPT [--delay D]
  mqueue peek QUEUE [--max N] [--from ID]              look without taking
  mqueue stats [QUEUE] | queues
  mqueue purge QUEUE --yes | delete QUEUE --yes | redrive QUEUE.dlq [--max N]
  mqueue tail [-f] QUEUE                               print new messages as they arrive (peeks)
Exit codes: 0 ok, 1 error, 2 usage, 3 no message / queue not found.
`
