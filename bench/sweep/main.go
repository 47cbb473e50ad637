// Command sweep runs bench/stack.sh at several rates, several times each,
// and prints one Markdown table row per run: what docs/performance.md's
// latency tables are made of. Runs on the reference machine vary a lot
// from one to the next, so a rate is measured more than once, and two
// configurations are compared by alternating them run by run (--compare),
// never by running one after the other.
//
//	go run ./bench/sweep --rates 300,500,600 --repeat 3
//	go run ./bench/sweep --rates 500 --repeat 4 --compare GOMAXPROCS=1
//
// The environment is passed to the services (see bench/stack.sh); --compare
// adds its KEY=VALUE settings to every other run.
//
// Before the first run and after the last, it measures the PostgreSQL
// ceiling (bench/ceiling.sh, pgbench for 15 s) and prints it above and
// below the table: the machine's speed drifts from one hour to the next,
// and every figure is read against the ceiling measured beside it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
		os.Exit(1)
	}
}

type config struct {
	rates       []float64
	repeat      int
	duration    time.Duration
	concurrency int
	compare     []string // KEY=VALUE settings of the B runs
	stack       string   // the script that runs one load
	ceiling     string   // the script that measures the PostgreSQL ceiling ("": not measured)
	out         string   // where each run's JSON is kept ("": nowhere)
}

// plannedRun is one load run of the sweep.
type plannedRun struct {
	rate   float64
	config string   // "A" or "B"
	env    []string // added to the environment
	n      int      // 1-based repetition
}

// plan orders the runs: rates in the order given, and at each rate the
// repetitions with A and B alternating (A B A B …; B A B A … on every
// second repetition, so that neither is always first after a rate change).
func plan(c config) []plannedRun {
	var runs []plannedRun
	for _, rate := range c.rates {
		for n := 1; n <= c.repeat; n++ {
			a := plannedRun{rate: rate, config: "A", n: n}
			if len(c.compare) == 0 {
				runs = append(runs, a)
				continue
			}
			b := plannedRun{rate: rate, config: "B", env: c.compare, n: n}
			if n%2 == 0 {
				runs = append(runs, b, a)
			} else {
				runs = append(runs, a, b)
			}
		}
	}
	return runs
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	rates := fs.String("rates", "300,500", "comma-separated orders/s, each an open-loop run")
	fs.IntVar(&c.repeat, "repeat", 2, "runs per rate (and per configuration)")
	fs.DurationVar(&c.duration, "duration", 25*time.Second, "length of each run")
	fs.IntVar(&c.concurrency, "concurrency", 256, "most requests in flight (loadgen --concurrency)")
	compare := fs.String("compare", "", "space-separated KEY=VALUE settings for a configuration B, alternated with the environment as it is (A)")
	fs.StringVar(&c.stack, "stack", "bench/stack.sh", "the script that runs one load against a fresh stack")
	fs.StringVar(&c.ceiling, "ceiling", "bench/ceiling.sh", "the script that measures the PostgreSQL ceiling before and after the runs (empty: skip)")
	fs.StringVar(&c.out, "out", "", "a directory to keep each run's JSON in")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for r := range strings.SplitSeq(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return c, fmt.Errorf("--rates: %q is not a positive rate", r)
		}
		c.rates = append(c.rates, v)
	}
	c.compare = strings.Fields(*compare)
	for _, kv := range c.compare {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return c, fmt.Errorf("--compare: %q is not KEY=VALUE", kv)
		}
	}
	if c.repeat < 1 || c.duration <= 0 || c.concurrency < 1 {
		return c, errors.New("--repeat and --concurrency must be at least 1, --duration positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.out != "" {
		if err := os.MkdirAll(c.out, 0o750); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	if len(c.compare) > 0 {
		fmt.Fprintf(stdout, "A: the environment as it is; B: %s\n\n", strings.Join(c.compare, " "))
	}
	if c.ceiling != "" {
		line, err := ceiling(ctx, c.ceiling, "before the runs", stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n\n", line)
	}
	fmt.Fprintln(stdout, header)
	runs := plan(c)
	for i, r := range runs {
		fmt.Fprintf(stderr, "sweep: run %d of %d: %.0f/s, %s #%d\n", i+1, len(runs), r.rate, r.config, r.n)
		out, err := loadRun(ctx, c, r, stderr)
		if err != nil {
			return fmt.Errorf("run %d (%.0f/s, %s): %w", i+1, r.rate, r.config, err)
		}
		if c.out != "" {
			name := filepath.Join(c.out, fmt.Sprintf("%03d-%.0f-%s.json", i+1, r.rate, r.config))
			if err := os.WriteFile(name, out, 0o600); err != nil { //nolint:gosec // under the operator's own --out
				return fmt.Errorf("--out: %w", err)
			}
		}
		var res result
		if err := json.Unmarshal(out, &res); err != nil {
			return fmt.Errorf("run %d: loadgen's JSON: %w", i+1, err)
		}
		fmt.Fprintln(stdout, row(r, res))
	}
	if c.ceiling != "" {
		line, err := ceiling(ctx, c.ceiling, "after the runs", stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\n%s\n", line)
	}
	return nil
}

// ceiling measures the PostgreSQL ceiling with script and returns the line
// that reports it.
func ceiling(ctx context.Context, script, when string, stderr io.Writer) (string, error) {
	fmt.Fprintf(stderr, "sweep: the PostgreSQL ceiling, %s\n", when)
	out, err := runScript(ctx, script, nil, stderr, "-T", "15")
	if err != nil {
		return "", err
	}
	tps, err := parseTPS(string(out))
	if err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	return fmt.Sprintf("PostgreSQL ceiling %s (pgbench, the flow's SQL, 15 s): %.0f orders/s", when, tps), nil
}

// parseTPS reads the rate from pgbench's summary line "tps = N (without
// initial connection time)".
func parseTPS(out string) (float64, error) {
	for line := range strings.Lines(out) {
		rest, ok := strings.CutPrefix(line, "tps = ")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, " ")
		tps, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("pgbench's tps line %q: %w", strings.TrimSpace(line), err)
		}
		return tps, nil
	}
	return 0, errors.New("no tps line in pgbench's output")
}

// loadRun runs the stack script once and returns loadgen's JSON.
func loadRun(ctx context.Context, c config, r plannedRun, stderr io.Writer) ([]byte, error) {
	return runScript(ctx, c.stack, r.env, stderr,
		"--rate", strconv.FormatFloat(r.rate, 'f', -1, 64), "--duration", c.duration.String(),
		"--concurrency", strconv.Itoa(c.concurrency), "--progress", "0", "--json")
}

// runScript runs a bash script with env added to the environment, passes
// its stderr through and returns its stdout.
func runScript(ctx context.Context, script string, env []string, stderr io.Writer, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...) //nolint:gosec // the operator's --stack or --ceiling
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w", script, err)
	}
	return out.Bytes(), nil
}

// result is the part of loadgen's --json report a row shows.
type result struct {
	AcceptedPerS float64 `json:"accepted_per_s"`
	InvoicedPerS float64 `json:"invoiced_per_s"`
	HTTPP50Ms    float64 `json:"http_p50_ms"`
	HTTPP99Ms    float64 `json:"http_p99_ms"`
	E2EP50Ms     float64 `json:"e2e_p50_ms"`
	E2EP99Ms     float64 `json:"e2e_p99_ms"`
	Errors       int64   `json:"errors"`
	BacklogAtEnd int64   `json:"backlog_at_end"`
	OutboxLag    []struct {
		Within20msPct float64 `json:"within_20ms_pct"`
	} `json:"outbox_lag"`
	PostInHandler *struct {
		Within10msPct float64 `json:"within_10ms_pct"`
	} `json:"post_orders_in_handler"`
	HostCPU *struct {
		BusyCores        float64 `json:"busy_cores"`
		MsPerOrder       float64 `json:"ms_per_order"`
		SwitchesPerOrder float64 `json:"switches_per_order"`
	} `json:"host_cpu"`
	Targets struct {
		Met bool `json:"met"`
	} `json:"targets"`
}

const header = "| rate | config | accepted/s | invoiced/s | POST p50, p99 ms | POST ≤ 10 ms in the handler | placed → invoiced p50, p99 ms | lag ≤ 20 ms (orders, invoices) | busy cores | CPU ms/order | switches/order | errors, backlog | targets |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|"

func row(r plannedRun, res result) string {
	lag := make([]string, 0, len(res.OutboxLag))
	for _, l := range res.OutboxLag {
		lag = append(lag, strconv.FormatFloat(l.Within20msPct, 'f', 1, 64)+" %")
	}
	lagCell := strings.Join(lag, ", ")
	if lagCell == "" {
		lagCell = "not measured"
	}
	inHandler := "–"
	if res.PostInHandler != nil {
		inHandler = strconv.FormatFloat(res.PostInHandler.Within10msPct, 'f', 1, 64) + " %"
	}
	busy, perOrder, switches := "–", "–", "–"
	if res.HostCPU != nil {
		busy = strconv.FormatFloat(res.HostCPU.BusyCores, 'f', 2, 64)
		perOrder = strconv.FormatFloat(res.HostCPU.MsPerOrder, 'f', 2, 64)
		switches = strconv.FormatFloat(res.HostCPU.SwitchesPerOrder, 'f', 0, 64)
	}
	met := "not met"
	if res.Targets.Met {
		met = "**met**"
	}
	return fmt.Sprintf("| %.0f/s | %s | %.0f | %.0f | %.1f, %.1f | %s | %.0f, %.0f | %s | %s | %s | %s | %d, %d | %s |",
		r.rate, r.config, res.AcceptedPerS, res.InvoicedPerS, res.HTTPP50Ms, res.HTTPP99Ms, inHandler,
		res.E2EP50Ms, res.E2EP99Ms, lagCell, busy, perOrder, switches, res.Errors, res.BacklogAtEnd, met)
}
