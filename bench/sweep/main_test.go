package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlan_alternates_configurations(t *testing.T) {
	t.Parallel()
	c := config{rates: []float64{300, 500}, repeat: 2, compare: []string{"GOMAXPROCS=1"}}
	var got []string
	for _, r := range plan(c) {
		got = append(got, fmt.Sprintf("%.0f %s %d", r.rate, r.config, r.n))
	}
	assert.Equal(t, []string{"300 A 1", "300 B 1", "300 B 2", "300 A 2", "500 A 1", "500 B 1", "500 B 2", "500 A 2"}, got)
	assert.Equal(t, []string{"GOMAXPROCS=1"}, plan(c)[1].env)

	c.compare = nil
	assert.Len(t, plan(c), 4, "without --compare, only A")
	assert.Empty(t, plan(c)[0].env)
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	c, err := parseFlags([]string{"--rates", "300, 450.5", "--repeat", "3", "--compare", "GOMAXPROCS=1 GOGC=200"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []float64{300, 450.5}, c.rates)
	assert.Equal(t, 3, c.repeat)
	assert.Equal(t, []string{"GOMAXPROCS=1", "GOGC=200"}, c.compare)

	for _, bad := range [][]string{
		{"--rates", "fast"}, {"--rates", "0"}, {"--compare", "GOMAXPROCS"}, {"--repeat", "0"},
	} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, bad)
	}
}

func TestRow(t *testing.T) {
	t.Parallel()
	var res result
	res.AcceptedPerS, res.InvoicedPerS = 499.6, 499.2
	res.HTTPP50Ms, res.HTTPP99Ms, res.E2EP50Ms, res.E2EP99Ms = 2.21, 8.94, 11.4, 23.6
	res.OutboxLag = append(res.OutboxLag, struct {
		Within20msPct float64 `json:"within_20ms_pct"`
	}{99.81}, struct {
		Within20msPct float64 `json:"within_20ms_pct"`
	}{99.5})
	res.Targets.Met = true
	assert.Equal(t, "| 500/s | B | 500 | 499 | 2.2, 8.9 | – | 11, 24 | 99.8 %, 99.5 % | – | – | – | 0, 0 | **met** |",
		row(plannedRun{rate: 500, config: "B"}, res))
	res.PostInHandler = &struct {
		Within10msPct float64 `json:"within_10ms_pct"`
	}{97.84}
	assert.Contains(t, row(plannedRun{rate: 500, config: "B"}, res), "| 2.2, 8.9 | 97.8 % | 11, 24 |")
	assert.Equal(t, strings.Count(header[:strings.Index(header, "\n")], "|"), strings.Count(row(plannedRun{}, result{}), "|"),
		"a row has the header's columns")
}

// TestRun_passes_rate_and_settings drives run with a --stack script that
// reports back the rate and the GOMAXPROCS it was given, as loadgen's
// JSON: the sweep's own plumbing, not a load.
func TestRun_passes_rate_and_settings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := filepath.Join(dir, "stack.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/usr/bin/env bash
set -eu
[ "$1" = --rate ] && [ "$3" = --duration ] && [ "$4" = 2s ] && [ "$9" = --json ]
echo "progress goes to stderr" >&2
cat <<EOF
{"accepted_per_s": $2, "invoiced_per_s": ${GOMAXPROCS:-0}, "http_p99_ms": 1, "e2e_p99_ms": 2,
 "outbox_lag": [{"within_20ms_pct": 100}, {"within_20ms_pct": 99}], "post_orders_in_handler": {"within_10ms_pct": 98.5},
 "host_cpu": {"busy_cores": 1.5, "ms_per_order": 3, "switches_per_order": 120}, "targets": {"met": true}}
EOF
`), 0o600))
	// pgbench's summary, a rate that rises by 100/s each time it runs.
	ceilingScript := filepath.Join(dir, "ceiling.sh")
	require.NoError(t, os.WriteFile(ceilingScript, []byte(`#!/usr/bin/env bash
set -eu
[ "$1" = -T ] && [ "$2" = 15 ]
echo "progress: 5.0 s, 1500.0 tps" >&2
n=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"
echo "number of transactions actually processed: 22500"
echo "tps = $((1500 + n * 100)).123456 (without initial connection time)"
`), 0o600))
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "out")
	err := run(t.Context(), []string{
		"--stack", script, "--ceiling", ceilingScript, "--rates", "300", "--repeat", "2",
		"--duration", "2s", "--compare", "GOMAXPROCS=1", "--out", out,
	}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	// the B line, a blank, the ceiling, a blank, the header (2 lines), 4
	// runs, a blank, the ceiling
	require.Len(t, lines, 12, stdout.String())
	assert.Equal(t, "A: the environment as it is; B: GOMAXPROCS=1", lines[0])
	assert.Equal(t, "PostgreSQL ceiling before the runs (pgbench, the flow's SQL, 15 s): 1500 orders/s", lines[2])
	want := []string{"| 300/s | A | 300 | 0 |", "| 300/s | B | 300 | 1 |", "| 300/s | B | 300 | 1 |", "| 300/s | A | 300 | 0 |"}
	for i, w := range want {
		assert.True(t, strings.HasPrefix(lines[6+i], w), "%q does not start with %q", lines[6+i], w)
		assert.Contains(t, lines[6+i], "| 0.0, 1.0 | 98.5 % | 0, 2 | 100.0 %, 99.0 % | 1.50 | 3.00 | 120 | 0, 0 | **met** |")
	}
	assert.Empty(t, lines[10])
	assert.Equal(t, "PostgreSQL ceiling after the runs (pgbench, the flow's SQL, 15 s): 1600 orders/s", lines[11])
	assert.Contains(t, stderr.String(), "progress goes to stderr")
	assert.Contains(t, stderr.String(), "progress: 5.0 s, 1500.0 tps", "pgbench's progress goes to stderr")
	saved, err := filepath.Glob(filepath.Join(out, "*.json"))
	require.NoError(t, err)
	assert.Len(t, saved, 4)
}

func TestRun_fails_with_the_stack(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "stack.sh")
	require.NoError(t, os.WriteFile(script, []byte("echo broken >&2; exit 3\n"), 0o600))
	err := run(t.Context(), []string{"--stack", script, "--ceiling", "", "--rates", "300", "--repeat", "1"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "exit status 3")
}

func TestRun_fails_without_a_ceiling(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noTPS := filepath.Join(dir, "ceiling.sh")
	require.NoError(t, os.WriteFile(noTPS, []byte("echo 'pgbench: error: connection refused'\n"), 0o600))
	err := run(t.Context(), []string{"--stack", "never-run.sh", "--ceiling", noTPS, "--rates", "300"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "no tps line in pgbench's output")
}

func TestParseTPS(t *testing.T) {
	t.Parallel()
	tps, err := parseTPS("latency average = 8.940 ms\ninitial connection time = 19.952 ms\ntps = 1773.510984 (without initial connection time)\n")
	require.NoError(t, err)
	assert.InDelta(t, 1773.51, tps, 0.001)
	_, err = parseTPS("tps = many (without initial connection time)\n")
	require.ErrorContains(t, err, `"tps = many (without initial connection time)"`)
}
