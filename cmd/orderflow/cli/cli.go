// Package cli is the orderflow operator command line: `orderflow poison
// list|show|replay|purge` and `orderflow outbox status`. Run is the whole
// program, so tests run it as a user would, against the real RabbitMQ and
// PostgreSQL.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit statuses.
const (
	ExitOK    = 0 // done, including "nothing matched"
	ExitFail  = 1 // the operation failed
	ExitUsage = 2 // the command line is wrong
)

const rootLong = `orderflow operates a running orderflow system: it lists, shows, replays and
purges the messages the services parked in their poison queues, and reports
the services' transactional outboxes.

Exit status:
  0  success, also when nothing matched
  1  the operation failed: RabbitMQ or PostgreSQL cannot be reached, a named
     message is not in the poison queues, the confirmation was declined
  2  usage: an unknown command or flag, wrong arguments, a malformed URL, or
     replay/purge without --yes while stdin is not a terminal

Output: results go to stdout; errors go to stderr, each as one "error: ..."
line ending in a newline, and a usage error adds the line "Run '... --help'
for usage.". With --json, stdout holds one JSON document and nothing else.

JSON shapes (--json; poison show always prints JSON):
  poison list     [{"id","queue","event","handler","reason","attempts",
                    "last_failure_at"}]                      ([] when empty)
  poison show     {"queue","id","event","handler","topic","subscriber",
                   "reason","error_type","attempts","first_failure_at",
                   "last_failure_at","replay_count","metadata":{...},
                   "target_queue","payload":<the event's JSON, or null>,
                   "payload_text":<the body when it is not JSON>}
  poison replay   {"dry_run":false,"messages":[{"id","queue","event",
  poison purge     "handler","target_queue"}]}  (what was, or would be, done)
  outbox status   [{"service","rows","oldest_created_at","oldest_age_seconds",
                    "error"}]  (oldest_* absent when the outbox is empty,
                    error only for a database that could not be read)`

// Run runs the orderflow command line with args (without the program name)
// and returns its exit status. getenv reads BROKER_URL, ORDERS_DATABASE_URL
// and INVOICES_DATABASE_URL. replay and purge ask before acting only when
// stdin is a terminal.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRoot(getenv, stdin, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var opErr operationError
	if errors.As(err, &opErr) {
		errs := []error{opErr.err}
		if joined, ok := opErr.err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // the top error only
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			fmt.Fprintln(stderr, "error:", oneLine(e.Error()))
		}
		return ExitFail
	}
	// Everything else is about the command line: cobra's own errors (unknown
	// flags, commands, arguments) and the commands' usage errors.
	var ue usageError
	if errors.As(err, &ue) && ue.cmd != nil {
		cmd = ue.cmd
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	fmt.Fprintln(stderr, "error:", msg)
	path := "orderflow"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
	return ExitUsage
}

// oneLine joins the lines of a message (pgx lists each address it dialled
// on a line of its own, often twice: with and without TLS) into one line,
// each distinct line once.
func oneLine(msg string) string {
	var parts []string
	for line := range strings.SplitSeq(msg, "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line != "" && !slices.Contains(parts, line) {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " ")
}

// usageError is a command line the command cannot run: exit status 2.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return usageError{err: fmt.Errorf(format, args...), cmd: cmd}
}

// operationError is a failure of a command that ran: exit status 1.
type operationError struct{ err error }

func (e operationError) Error() string { return e.err.Error() }
func (e operationError) Unwrap() error { return e.err }

func newRoot(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "orderflow",
		Short:         "Operate orderflow: failed messages and outboxes",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err: err, cmd: c} })
	group(root)
	root.AddCommand(poisonCmd(getenv, stdin, stderr), outboxCmd(getenv))
	markOperations(root)
	return root
}

// group makes cmd a command of subcommands: without one it prints its help;
// with an unknown one it is a usage error (cobra would print the help and
// succeed for a command below the root).
func group(cmd *cobra.Command) {
	cmd.SuggestionsMinimumDistance = 2
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return usageError{err: errors.New(msg), cmd: c}
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// args wraps a positional-argument check so that its failure is a usage
// error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := check(c, a); err != nil {
			return usageError{err: err, cmd: c}
		}
		return nil
	}
}

// markOperations makes every error a command returns while it runs an
// operationError, unless the command said it is a usage error.
func markOperations(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		markOperations(c)
	}
	if cmd.RunE == nil {
		return
	}
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, a []string) error {
		err := run(c, a)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return operationError{err: err}
	}
}

// isTerminal reports whether r is a terminal, where a confirmation can be
// asked.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) //nolint:gosec // a file descriptor fits an int
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
