package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/poison"
)

// services whose poison queues the tool reads by default.
var services = []string{"orders", "invoices"}

const defaultBrokerURL = "amqp://guest:guest@127.0.0.1:5672/" //nolint:gosec // RabbitMQ's loopback default account

type poisonOptions struct {
	brokerURL string
	queues    []string
	json      bool
	filter    poison.Filter
	all       bool
	yes       bool
	dryRun    bool
	stdin     io.Reader
	stderr    io.Writer
}

func poisonCmd(getenv func(string) string, stdin io.Reader, stderr io.Writer) *cobra.Command {
	o := &poisonOptions{stdin: stdin, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "poison",
		Short: "List, show, replay and purge messages in the services' poison queues",
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			if o.brokerURL == "" {
				o.brokerURL = envOr(getenv, "BROKER_URL", defaultBrokerURL)
			}
			if _, err := amqp091.ParseURI(o.brokerURL); err != nil {
				return usagef(c, "invalid --broker-url: %v", err)
			}
			return nil
		},
	}
	group(cmd)
	cmd.PersistentFlags().StringVar(&o.brokerURL, "broker-url", "", "RabbitMQ URL (default $BROKER_URL, else "+defaultBrokerURL+")")
	cmd.PersistentFlags().StringSliceVar(&o.queues, "queue", nil, "poison queues to use (default poison.orders,poison.invoices)")
	cmd.AddCommand(listCmd(o), showCmd(o), replayCmd(o), purgeCmd(o))
	return cmd
}

func (o *poisonOptions) queueNames() []string {
	if len(o.queues) > 0 {
		return o.queues
	}
	qs := make([]string, len(services))
	for i, s := range services {
		qs[i] = messaging.PoisonQueue(s)
	}
	return qs
}

func filterFlags(cmd *cobra.Command, o *poisonOptions) {
	cmd.Flags().StringVar(&o.filter.Handler, "handler", "", "only messages failed by this handler")
	cmd.Flags().StringVar(&o.filter.Event, "event", "", "only messages of this event, e.g. OrderPlaced")
	cmd.Flags().StringVar(&o.filter.Reason, "reason", "", "only messages whose failure reason contains this text (any case)")
}

func (o *poisonOptions) dial() (*poison.Inspector, error) {
	return poison.Dial(o.brokerURL)
}

func listCmd(o *poisonOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List poison messages (without consuming them or changing their order)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := o.dial()
			if err != nil {
				return err
			}
			defer in.Close()
			msgs, err := in.List(o.queueNames(), o.filter)
			if err != nil {
				return err
			}
			if o.json {
				return writeJSON(cmd.OutOrStdout(), summaries(msgs))
			}
			if len(msgs) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no poison messages in %s\n", strings.Join(o.queueNames(), ", "))
				return nil
			}
			return writeTable(cmd.OutOrStdout(), msgs, time.Now())
		},
	}
	filterFlags(cmd, o)
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

func showCmd(o *poisonOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one poison message as JSON: payload, metadata and failure",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := o.dial()
			if err != nil {
				return err
			}
			defer in.Close()
			msgs, err := in.List(o.queueNames(), poison.Filter{IDs: args})
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				return fmt.Errorf("message %s is not in %s", args[0], strings.Join(o.queueNames(), ", "))
			}
			return writeJSON(cmd.OutOrStdout(), detail(msgs[0]))
		},
	}
}

// destructive is what replay and purge share: a selection that must be
// explicit, --dry-run, and --yes or a confirmation on a terminal.
type destructive struct {
	verb, done string // "replay", "replayed"
	act        func(*poison.Inspector, *cobra.Command, poison.Filter) ([]poison.Message, error)
}

func (d destructive) command(o *poisonOptions, use, short string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, named []string) error {
			f, err := o.selection(cmd, named)
			if err != nil {
				return err
			}
			ask := !o.yes && !o.dryRun
			if ask && !isTerminal(o.stdin) {
				return usagef(cmd, "%s acts on the poison queues: pass --yes to confirm (stdin is not a terminal), or --dry-run to see what it would %s", d.verb, d.verb)
			}
			in, err := o.dial()
			if err != nil {
				return err
			}
			defer in.Close()
			out := cmd.OutOrStdout()
			if o.dryRun || ask {
				msgs, err := in.List(o.queueNames(), f)
				if err == nil {
					err = missingIDs(named, msgs)
				}
				if o.dryRun || err != nil {
					d.report(out, o.json, true, msgs)
					return err
				}
				if len(msgs) == 0 {
					d.report(out, o.json, false, nil)
					return nil
				}
				if err := writeTable(o.stderr, msgs, time.Now()); err != nil {
					return err
				}
				ok, err := confirm(o.stdin, o.stderr, fmt.Sprintf("%s these %d message(s)? [y/N] ", d.verb, len(msgs)))
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("aborted: nothing %s", d.done)
				}
				// Exactly the messages confirmed, even if more arrived.
				f = poison.Filter{IDs: ids(msgs)}
			}
			done, err := d.act(in, cmd, f)
			d.report(out, o.json, false, done)
			return err
		},
	}
	filterFlags(cmd, o)
	cmd.Flags().BoolVar(&o.all, "all", false, d.verb+" every poison message")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation (required when stdin is not a terminal)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "show what would be "+d.done+", change nothing")
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

// selection turns IDs, filters and --all into a filter. One of them is
// required, so that a bare command never acts on every message.
func (o *poisonOptions) selection(cmd *cobra.Command, ids []string) (poison.Filter, error) {
	f := o.filter
	f.IDs = ids
	filtered := f.Handler != "" || f.Event != "" || f.Reason != ""
	switch {
	case o.all && (len(ids) > 0 || filtered):
		return f, usagef(cmd, "--all selects every message: drop it, or the IDs and filters")
	case len(ids) == 0 && !o.all && !filtered:
		return f, usagef(cmd, "name message IDs, or select with --handler, --event, --reason or --all")
	}
	return f, nil
}

type action struct {
	ID          string `json:"id"`
	Queue       string `json:"queue"`
	Event       string `json:"event"`
	Handler     string `json:"handler"`
	TargetQueue string `json:"target_queue"`
}

type actionReport struct {
	DryRun   bool     `json:"dry_run"`
	Messages []action `json:"messages"`
}

func (d destructive) report(w io.Writer, asJSON, dryRun bool, msgs []poison.Message) {
	if asJSON {
		r := actionReport{DryRun: dryRun, Messages: make([]action, len(msgs))}
		for i, m := range msgs {
			r.Messages[i] = action{ID: m.ID, Queue: m.Queue, Event: m.Event, Handler: m.Handler, TargetQueue: m.TargetQueue}
		}
		_ = writeJSON(w, r)
		return
	}
	if len(msgs) == 0 {
		fmt.Fprintf(w, "nothing to %s\n", d.verb)
		return
	}
	for _, m := range msgs {
		prefix := d.done
		if dryRun {
			prefix = "would " + d.verb
		}
		if d.verb == "replay" {
			fmt.Fprintf(w, "%s %s (%s) to %s\n", prefix, m.ID, m.Event, m.TargetQueue)
		} else {
			fmt.Fprintf(w, "%s %s (%s) from %s\n", prefix, m.ID, m.Event, m.Queue)
		}
	}
}

func replayCmd(o *poisonOptions) *cobra.Command {
	return destructive{
		verb: "replay", done: "replayed",
		act: func(in *poison.Inspector, cmd *cobra.Command, f poison.Filter) ([]poison.Message, error) {
			return in.Replay(cmd.Context(), o.queueNames(), f, poison.ReplayOptions{})
		},
	}.command(o, "replay [ID...] [--handler H] [--event E] [--reason TEXT] | --all",
		"Republish poison messages to their handlers' queues, then remove them")
}

func purgeCmd(o *poisonOptions) *cobra.Command {
	return destructive{
		verb: "purge", done: "purged",
		act: func(in *poison.Inspector, _ *cobra.Command, f poison.Filter) ([]poison.Message, error) {
			return in.Purge(o.queueNames(), f)
		},
	}.command(o, "purge [ID...] [--handler H] [--event E] [--reason TEXT] | --all",
		"Delete poison messages for good")
}

func ids(msgs []poison.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// missingIDs reports the named ids that are not among msgs.
func missingIDs(want []string, msgs []poison.Message) error {
	var errs []error
	have := ids(msgs)
	for _, id := range want {
		found := false
		for _, h := range have {
			found = found || h == id
		}
		if !found {
			errs = append(errs, fmt.Errorf("message %s: %w", id, poison.ErrNotFound))
		}
	}
	return errors.Join(errs...)
}

// confirm asks on the terminal; only "y" or "yes" agrees.
func confirm(stdin io.Reader, prompt io.Writer, question string) (bool, error) {
	fmt.Fprint(prompt, question)
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read answer: %w", err)
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

type summary struct {
	ID       string    `json:"id"`
	Queue    string    `json:"queue"`
	Event    string    `json:"event"`
	Handler  string    `json:"handler"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	Failed   time.Time `json:"last_failure_at,omitzero"`
}

func summaries(msgs []poison.Message) []summary {
	out := make([]summary, len(msgs))
	for i, m := range msgs {
		out[i] = summary{ID: m.ID, Queue: m.Queue, Event: m.Event, Handler: m.Handler, Reason: m.Reason, Attempts: m.Attempts, Failed: m.LastFailed}
	}
	return out
}

type detailView struct {
	poison.Message
	Payload json.RawMessage `json:"payload"`
	Body    string          `json:"payload_text,omitempty"`
}

func detail(m poison.Message) detailView {
	v := detailView{Message: m}
	if json.Valid(m.Payload) {
		v.Payload = m.Payload
	} else {
		v.Payload = json.RawMessage("null")
		v.Body = string(m.Payload)
	}
	return v
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func writeTable(w io.Writer, msgs []poison.Message, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUEUE\tEVENT\tHANDLER\tATTEMPTS\tAGE\tREASON")
	for _, m := range msgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.Queue, m.Event, m.Handler, m.Attempts,
			age(m.Age(now)), truncate(m.Reason, 60))
	}
	return tw.Flush()
}

func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Hour).String()
	}
}

func truncate(s string, n int) string {
	r := []rune(strings.ReplaceAll(s, "\n", " "))
	if len(r) <= n {
		return string(r)
	}
	return string(r[:n-1]) + "…"
}
