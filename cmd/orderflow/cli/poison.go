// Package cli is the orderflow operator command line: `orderflow poison
// list|show|replay|purge`.
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

	"github.com/spf13/cobra"

	"github.com/orderflow/orderflow/pkg/messaging"
)

// services whose poison queues the tool reads by default.
var services = []string{"orders", "invoices"}

const defaultBrokerURL = "amqp://guest:guest@127.0.0.1:5672/" //nolint:gosec // RabbitMQ's loopback default account

type options struct {
	brokerURL string
	queues    []string
	json      bool
	filter    messaging.Filter
	all       bool
	yes       bool
}

// NewRootCmd returns the orderflow command. getenv reads BROKER_URL.
func NewRootCmd(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "orderflow",
		Short:         "Operate orderflow: inspect and replay failed messages",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	var o options
	poison := &cobra.Command{
		Use:   "poison",
		Short: "List, show, replay and purge messages in the services' poison queues",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.brokerURL == "" {
				o.brokerURL = getenv("BROKER_URL")
			}
			if o.brokerURL == "" {
				o.brokerURL = defaultBrokerURL
			}
			return nil
		},
	}
	poison.PersistentFlags().StringVar(&o.brokerURL, "broker-url", "", "RabbitMQ URL (default $BROKER_URL, else "+defaultBrokerURL+")")
	poison.PersistentFlags().StringSliceVar(&o.queues, "queue", nil, "poison queues to use (default poison.orders,poison.invoices)")
	poison.AddCommand(listCmd(&o), showCmd(&o), replayCmd(&o), purgeCmd(&o))
	root.AddCommand(poison)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	wrapErrors(root, stderr)
	return root
}

// wrapErrors prints a command's error once, as "error: …".
func wrapErrors(cmd *cobra.Command, stderr io.Writer) {
	for _, c := range cmd.Commands() {
		wrapErrors(c, stderr)
	}
	if cmd.RunE == nil {
		return
	}
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		err := run(c, args)
		if err != nil {
			fmt.Fprintln(stderr, "error:", err)
		}
		return err
	}
}

func (o *options) queueNames() []string {
	if len(o.queues) > 0 {
		return o.queues
	}
	qs := make([]string, len(services))
	for i, s := range services {
		qs[i] = messaging.PoisonQueue(s)
	}
	return qs
}

func filterFlags(cmd *cobra.Command, o *options) {
	cmd.Flags().StringVar(&o.filter.Handler, "handler", "", "only messages failed by this handler")
	cmd.Flags().StringVar(&o.filter.Event, "event", "", "only messages of this event, e.g. OrderPlaced")
	cmd.Flags().StringVar(&o.filter.Reason, "reason", "", "only messages whose failure reason contains this text")
}

func (o *options) dial() (*messaging.PoisonInspector, error) {
	return messaging.DialPoisonInspector(o.brokerURL)
}

func listCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List poison messages (without consuming them or changing their order)",
		Args:  cobra.NoArgs,
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

func showCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one poison message: payload, metadata and failure",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := o.dial()
			if err != nil {
				return err
			}
			defer in.Close()
			msgs, err := in.List(o.queueNames(), messaging.Filter{IDs: args})
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

// selection turns IDs and --all into a filter; one of them is required, so
// that a bare command never acts on every message.
func selection(o *options, args []string) (messaging.Filter, error) {
	f := o.filter
	f.IDs = args
	if len(args) == 0 && !o.all && f.Handler == "" && f.Event == "" && f.Reason == "" {
		return f, errors.New("name message IDs, or select with --handler, --event, --reason or --all")
	}
	return f, nil
}

// selectAndDial checks the selection first, so a bare command fails before
// it connects, then connects.
func (o *options) selectAndDial(args []string) (messaging.Filter, *messaging.PoisonInspector, error) {
	f, err := selection(o, args)
	if err != nil {
		return f, nil, err
	}
	in, err := o.dial()
	return f, in, err
}

func replayCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay [ID...] | --handler H | --all",
		Short: "Republish poison messages to their handlers' queues, then remove them",
		RunE: func(cmd *cobra.Command, args []string) error {
			f, in, err := o.selectAndDial(args)
			if err != nil {
				return err
			}
			defer in.Close()
			done, err := in.Replay(cmd.Context(), o.queueNames(), f, messaging.ReplayOptions{})
			for _, m := range done {
				fmt.Fprintf(cmd.OutOrStdout(), "replayed %s (%s) to %s\n", m.ID, m.Event, m.TargetQueue)
			}
			if err != nil {
				return err
			}
			if len(done) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to replay")
			}
			return nil
		},
	}
	filterFlags(cmd, o)
	cmd.Flags().BoolVar(&o.all, "all", false, "replay every poison message")
	return cmd
}

func purgeCmd(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "purge [ID...] | --all",
		Short: "Delete poison messages for good (asks first unless --yes)",
		RunE: func(cmd *cobra.Command, args []string) error {
			f, in, err := o.selectAndDial(args)
			if err != nil {
				return err
			}
			defer in.Close()
			if !o.yes {
				msgs, err := in.List(o.queueNames(), f)
				if err != nil {
					return err
				}
				if len(msgs) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "nothing to purge")
					return nil
				}
				ok, err := confirm(cmd, fmt.Sprintf("delete %d message(s) for good? [y/N] ", len(msgs)))
				if err != nil || !ok {
					if err == nil {
						fmt.Fprintln(cmd.OutOrStdout(), "aborted, nothing deleted")
					}
					return err
				}
			}
			done, err := in.Purge(o.queueNames(), f)
			for _, m := range done {
				fmt.Fprintf(cmd.OutOrStdout(), "purged %s (%s) from %s\n", m.ID, m.Event, m.Queue)
			}
			return err
		},
	}
	filterFlags(cmd, o)
	cmd.Flags().BoolVar(&o.all, "all", false, "purge every poison message")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func confirm(cmd *cobra.Command, prompt string) (bool, error) {
	fmt.Fprint(cmd.OutOrStdout(), prompt)
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
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

func summaries(msgs []messaging.PoisonMessage) []summary {
	out := make([]summary, len(msgs))
	for i, m := range msgs {
		out[i] = summary{ID: m.ID, Queue: m.Queue, Event: m.Event, Handler: m.Handler, Reason: m.Reason, Attempts: m.Attempts, Failed: m.LastFailed}
	}
	return out
}

type detailView struct {
	messaging.PoisonMessage
	Payload json.RawMessage `json:"payload"`
	Body    string          `json:"payload_text,omitempty"`
}

func detail(m messaging.PoisonMessage) detailView {
	v := detailView{PoisonMessage: m}
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

func writeTable(w io.Writer, msgs []messaging.PoisonMessage, now time.Time) error {
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
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
