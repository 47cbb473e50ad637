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
	assert.Equal(t, "| 500/s | B | 500 | 499 | 2.2, 8.9 | 11, 24 | 99.8 %, 99.5 % | – | – | 0, 0 | **met** |",
		row(plannedRun{rate: 500, config: "B"}, res))
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
 "outbox_lag": [{"within_20ms_pct": 100}, {"within_20ms_pct": 99}],
 "host_cpu": {"busy_cores": 1.5, "ms_per_order": 3}, "targets": {"met": true}}
EOF
`), 0o600))
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "out")
	err := run(t.Context(), []string{
		"--stack", script, "--rates", "300", "--repeat", "2",
		"--duration", "2s", "--compare", "GOMAXPROCS=1", "--out", out,
	}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, 8, stdout.String()) // the B line, a blank, the header (2 lines), 4 runs
	assert.Equal(t, "A: the environment as it is; B: GOMAXPROCS=1", lines[0])
	want := []string{"| 300/s | A | 300 | 0 |", "| 300/s | B | 300 | 1 |", "| 300/s | B | 300 | 1 |", "| 300/s | A | 300 | 0 |"}
	for i, w := range want {
		assert.True(t, strings.HasPrefix(lines[4+i], w), "%q does not start with %q", lines[4+i], w)
		assert.Contains(t, lines[4+i], "| 100.0 %, 99.0 % | 1.50 | 3.00 | 0, 0 | **met** |")
	}
	assert.Contains(t, stderr.String(), "progress goes to stderr")
	saved, err := filepath.Glob(filepath.Join(out, "*.json"))
	require.NoError(t, err)
	assert.Len(t, saved, 4)
}

func TestRun_fails_with_the_stack(t *testing.T) {
	t.Parallel()
	script := filepath.Join(t.TempDir(), "stack.sh")
	require.NoError(t, os.WriteFile(script, []byte("echo broken >&2; exit 3\n"), 0o600))
	err := run(t.Context(), []string{"--stack", script, "--rates", "300", "--repeat", "1"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "exit status 3")
}
