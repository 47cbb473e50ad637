package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/spf13/cobra"

	"github.com/orderflow/orderflow/pkg/outbox"
)

// defaultDatabaseURL is a service's database when nothing says otherwise:
// the services' own default (DATABASE_URL).
func defaultDatabaseURL(service string) string {
	return "postgres://postgres@127.0.0.1:5432/" + service + "?sslmode=disable"
}

// outboxQuery reads the backlog and the age of its oldest row by the
// database's clock, so that the tool's own clock does not matter.
const outboxQuery = `SELECT count(*), min(created_at), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 FROM ` +
	outbox.Table

// outboxTimeout bounds the reading of one database.
const outboxTimeout = 10 * time.Second

type outboxOptions struct {
	urls map[string]*string // service → database URL
	json bool
}

func outboxCmd(getenv func(string) string) *cobra.Command {
	o := &outboxOptions{urls: map[string]*string{}}
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Report the services' transactional outboxes",
	}
	group(cmd)
	status := &cobra.Command{
		Use:   "status",
		Short: "Show each service's outbox backlog (rows not yet forwarded to RabbitMQ) and the age of its oldest row",
		Long: `Show each service's outbox backlog: the rows written with an order or an invoice
and not yet forwarded to RabbitMQ, and the age of the oldest. A backlog that
grows, or an oldest row older than a few seconds, means the service's
forwarder is not publishing: see its /readyz (broker, forwarder).`,
		Args: args(cobra.NoArgs),
		PreRunE: func(c *cobra.Command, _ []string) error {
			for _, s := range services {
				u := o.urls[s]
				if *u == "" {
					*u = envOr(getenv, envName(s), defaultDatabaseURL(s))
				}
				if _, err := pgconn.ParseConfig(*u); err != nil {
					return usagef(c, "invalid --%s-database-url: %v", s, errors.Unwrap(err))
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows := make([]outboxStatus, len(services))
			var errs []error
			for i, s := range services {
				rows[i] = readOutbox(cmd.Context(), s, *o.urls[s])
				if rows[i].err != nil {
					errs = append(errs, rows[i].err)
				}
			}
			if o.json {
				if err := writeJSON(cmd.OutOrStdout(), rows); err != nil {
					return err
				}
			} else if err := writeOutboxTable(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
			return errors.Join(errs...)
		},
	}
	for _, s := range services {
		o.urls[s] = new(string)
		status.Flags().StringVar(o.urls[s], s+"-database-url", "",
			fmt.Sprintf("%s's database (default $%s, else %s)", s, envName(s), defaultDatabaseURL(s)))
	}
	status.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.AddCommand(status)
	return cmd
}

func envName(service string) string {
	switch service {
	case "orders":
		return "ORDERS_DATABASE_URL"
	default:
		return "INVOICES_DATABASE_URL"
	}
}

// outboxStatus is one service's row of `outbox status`.
type outboxStatus struct {
	Service    string     `json:"service"`
	Rows       *int64     `json:"rows"` // null when the database could not be read
	Oldest     *time.Time `json:"oldest_created_at,omitempty"`
	OldestAge  *float64   `json:"oldest_age_seconds,omitempty"`
	Error      string     `json:"error,omitempty"`
	err        error
	oldestSpan time.Duration
}

func readOutbox(ctx context.Context, service, dsn string) outboxStatus {
	st := outboxStatus{Service: service}
	fail := func(err error) outboxStatus {
		st.err = fmt.Errorf("%s: %w", service, err)
		st.Error = st.err.Error()
		return st
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return fail(fmt.Errorf("open %s: %w", redactDSN(dsn), err))
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, outboxTimeout)
	defer cancel()
	var oldest sql.NullTime
	var n int64
	var ageSeconds float64
	err = db.QueryRowContext(ctx, outboxQuery).Scan(&n, &oldest, &ageSeconds)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return fail(fmt.Errorf("no outbox table %s in %s: has the service run its migrations?", outbox.Table, redactDSN(dsn)))
	case err != nil:
		return fail(fmt.Errorf("cannot read the outbox at %s: %w", redactDSN(dsn), err))
	}
	st.Rows = &n
	if oldest.Valid {
		t := oldest.Time.UTC()
		a := math.Max(0, math.Round(ageSeconds*1000)/1000)
		st.Oldest, st.OldestAge = &t, &a
		st.oldestSpan = time.Duration(a * float64(time.Second))
	}
	return st
}

func writeOutboxTable(w io.Writer, rows []outboxStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tROWS\tOLDEST")
	for _, r := range rows {
		switch {
		case r.err != nil:
			fmt.Fprintf(tw, "%s\t?\t?\n", r.Service)
		case r.Oldest == nil:
			fmt.Fprintf(tw, "%s\t%d\t-\n", r.Service, *r.Rows)
		default:
			fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Service, *r.Rows, oldestAge(r.oldestSpan))
		}
	}
	return tw.Flush()
}

// oldestAge is age, but a row younger than a second is "<1s", not "-".
func oldestAge(d time.Duration) string {
	if d < time.Second {
		return "<1s"
	}
	return age(d)
}

// redactDSN hides a password in a database URL.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "the database"
	}
	return u.Redacted()
}
