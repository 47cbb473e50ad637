package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat_counts_all_but_idle_and_iowait_and_the_switches(t *testing.T) {
	t.Parallel()
	// user nice system idle iowait irq softirq steal guest guest_nice
	busy, switches, err := parseStat([]byte("cpu  100 5 40 1000 7 3 2 1 50 0\ncpu0 50 2 20 500 3 1 1 0 25 0\nintr 99 1 2\nctxt 123456\nbtime 1\n"))
	require.NoError(t, err)
	assert.InDelta(t, 1.51, busy, 1e-9) // (100+5+40+3+2+1) / 100; guest is inside user already
	assert.Equal(t, uint64(123456), switches)

	for _, bad := range []string{"intr 1 2 3\n", "cpu  1 2 3 4 5 6 7 8\nintr 1\n", "cpu  1 2 3 4 5 6 7 8\nctxt many\n"} {
		_, _, err = parseStat([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestParseProcStat_reads_names_with_spaces_and_parentheses(t *testing.T) {
	t.Parallel()
	p, err := parseProcStat([]byte("4242 (Web Content (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1234 0 0"))
	require.NoError(t, err)
	assert.Equal(t, "Web Content (x)", p.comm)
	assert.InDelta(t, 3.0, p.cpu, 1e-9) // utime 250 + stime 50 ticks
	assert.Equal(t, uint64(1234), p.start)

	_, err = parseProcStat([]byte("4242 (short) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18"))
	require.Error(t, err)
	_, err = parseProcStat([]byte("no name here"))
	require.Error(t, err)
}

func TestHostCPU_adds_up_programs_over_the_interval(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	a := hostSample{at: t0, busy: 100, switches: 1_000_000, procs: map[int]procSample{
		1: {comm: "postgres", cpu: 10, start: 1},
		2: {comm: "postgres", cpu: 5, start: 2},
		3: {comm: "beam.smp", cpu: 50, start: 3},
		4: {comm: "idle-daemon", cpu: 7, start: 4},
		5: {comm: "reused", cpu: 40, start: 5}, // its pid is taken by another process by b
		6: {comm: "kworker/u8:1-events_unbound", cpu: 30, start: 6},
	}}
	b := hostSample{at: t0.Add(10 * time.Second), busy: 115, switches: 1_300_000, procs: map[int]procSample{
		1: {comm: "postgres", cpu: 13, start: 1},
		2: {comm: "postgres", cpu: 6, start: 2},
		3: {comm: "beam.smp", cpu: 56, start: 3},
		4: {comm: "idle-daemon", cpu: 7.05, start: 4},              // 0.005 cores: left out
		5: {comm: "loadgen", cpu: 2, start: 900},                   // new: counts from zero
		6: {comm: "kworker/u8:1-flush-254:0", cpu: 30.6, start: 6}, // the same worker, renamed by its work
		7: {comm: "kworker/1:2-events", cpu: 0.4, start: 950},
	}}
	h := hostCPU(a, b, 3000)
	require.NotNil(t, h)
	assert.InDelta(t, 1.5, h.BusyCores, 1e-9)
	assert.InDelta(t, 5.0, h.MsPerOrder, 1e-9)         // 15 CPU-s / 3000 orders
	assert.InDelta(t, 100.0, h.SwitchesPerOrder, 1e-9) // 300,000 switches / 3000 orders
	assert.Equal(t, []ProcessCPU{
		{Name: "beam.smp", Cores: 0.6},
		{Name: "postgres", Cores: 0.4},
		{Name: "loadgen", Cores: 0.2},
		{Name: "kworker", Cores: 0.1},
	}, h.ByProcess)

	assert.Nil(t, hostCPU(b, b, 1), "an empty interval has no rate")
	assert.Zero(t, hostCPU(a, b, 0).MsPerOrder, "no orders, no cost per order")
	assert.Zero(t, hostCPU(a, b, 0).SwitchesPerOrder, "no orders, no switches per order")
}

func TestSampleHost_reads_proc(t *testing.T) { //nolint:paralleltest // sets procRoot
	root := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o750))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	}
	write("stat", "cpu  200 0 100 5000 10 0 0 0 0 0\nctxt 42\n")
	write("17/stat", "17 (postgres) S 1 17 17 0 -1 0 0 0 0 0 30 20 0 0 20 0 1 0 100 0 0")
	write("18/stat", "garbage")
	write("self/stat", "18 (self) S 1 2 3 4 5 6 7 8 9 10 11 12 13") // not a pid directory
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })

	s, err := sampleHost()
	require.NoError(t, err)
	assert.InDelta(t, 3.0, s.busy, 1e-9)
	assert.Equal(t, uint64(42), s.switches)
	assert.Equal(t, map[int]procSample{17: {comm: "postgres", cpu: 0.5, start: 100}}, s.procs)
}

func TestSampleHost_on_this_machine(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc here")
	}
	s, err := sampleHost()
	require.NoError(t, err)
	assert.Positive(t, s.busy)
	assert.Positive(t, s.switches)
	self, ok := s.procs[os.Getpid()]
	require.True(t, ok, "this process is in its own sample")
	assert.NotEmpty(t, self.comm)
}
