package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The host's CPU during a run, read from Linux's /proc: how busy the whole
// machine was, and which processes kept it busy. On the reference machine
// everything (PostgreSQL, RabbitMQ, both services, loadgen) shares two
// cores, so the CPU one order costs the machine decides how close to
// saturation a given rate runs, which latency alone cannot show on a noisy
// machine. It is the machine loadgen runs on: meaningful only when the stack
// runs there too (bench/stack.sh). Elsewhere, or where /proc is missing,
// the figures are left out.

// procRoot is /proc; tests point it at a fixture.
var procRoot = "/proc"

// userHZ is the unit of /proc's CPU times (USER_HZ): 100 on every Linux
// architecture Go supports.
const userHZ = 100

// hostSample is the machine's CPU counters at one moment.
type hostSample struct {
	at       time.Time
	busy     float64            // CPU-seconds spent outside idle and iowait, all CPUs
	switches uint64             // context switches since boot, all CPUs
	procs    map[int]procSample // by pid
}

type procSample struct {
	comm  string
	cpu   float64 // user + system CPU-seconds
	start uint64  // when it started, in clock ticks after boot: tells a reused pid
}

// HostCPU is what the machine spent over the sending phase of a run.
type HostCPU struct {
	// BusyCores is the machine's busy CPU-seconds per second: 2 means both
	// cores of a 2-core machine were busy all the time.
	BusyCores float64 `json:"busy_cores"`
	// MsPerOrder is the machine's busy CPU time per accepted order.
	MsPerOrder float64 `json:"ms_per_order"`
	// SwitchesPerOrder is the machine's context switches per accepted
	// order. Below saturation most of an order's CPU goes to waking threads
	// (one per message, per hop, in every program), and this counts them:
	// it falls steeply with the rate as work starts to queue and wake-ups
	// are shared.
	SwitchesPerOrder float64 `json:"switches_per_order"`
	// ByProcess is each program's share in cores (processes of the same
	// name added up: PostgreSQL's backends are one "postgres"), the busiest
	// first, those under 1 % of a core left out.
	ByProcess []ProcessCPU `json:"by_process"`
}

// ProcessCPU is one program's CPU over the run, in cores.
type ProcessCPU struct {
	Name  string  `json:"name"`
	Cores float64 `json:"cores"`
}

// sampleHost reads the machine's and every process's CPU time.
func sampleHost() (hostSample, error) {
	s := hostSample{at: time.Now(), procs: map[int]procSample{}}
	b, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return s, fmt.Errorf("host cpu: %w", err)
	}
	if s.busy, s.switches, err = parseStat(b); err != nil {
		return s, err
	}
	dirs, err := filepath.Glob(filepath.Join(procRoot, "[0-9]*"))
	if err != nil {
		return s, fmt.Errorf("host cpu: %w", err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "stat")) //nolint:gosec // a /proc entry
		if err != nil {
			continue // the process has gone
		}
		if p, err := parseProcStat(b); err == nil {
			s.procs[pid] = p
		}
	}
	return s, nil
}

// parseStat reads /proc/stat: the busy CPU-seconds of its "cpu" line
// (every field but idle and iowait; guest time is already in user) and the
// context switches of its "ctxt" line.
func parseStat(b []byte) (busy float64, switches uint64, err error) {
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("host cpu: no cpu line in /proc/stat")
	}
	var ticks uint64
	for i, v := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("host cpu: /proc/stat: %w", err)
		}
		if i != 3 && i != 4 {
			ticks += n
		}
	}
	for l := range strings.Lines(string(rest)) {
		if v, ok := strings.CutPrefix(l, "ctxt "); ok {
			if switches, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil {
				return 0, 0, fmt.Errorf("host cpu: /proc/stat ctxt: %w", err)
			}
			return float64(ticks) / userHZ, switches, nil
		}
	}
	return 0, 0, errors.New("host cpu: no ctxt line in /proc/stat")
}

// parseProcStat reads a process's name, user + system CPU-seconds and start
// time from /proc/<pid>/stat. The name is in parentheses and may hold
// spaces or parentheses itself, so the fields are counted from the last ')'.
func parseProcStat(b []byte) (procSample, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procSample{}, errors.New("malformed /proc/<pid>/stat")
	}
	f := strings.Fields(string(b[end+1:]))
	// After the name: state(0) ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime(11) stime(12) cutime cstime priority
	// nice num_threads itrealvalue starttime(19).
	if len(f) < 20 {
		return procSample{}, errors.New("short /proc/<pid>/stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procSample{}, fmt.Errorf("/proc/<pid>/stat: %w", err)
	}
	return procSample{comm: string(b[open+1 : end]), cpu: float64(ut+st) / userHZ, start: start}, nil
}

// hostCPU is what the machine spent between a and b, over orders orders.
// A process that started after a counts from zero (a pid is the same
// process if its start time is: a kernel worker's name changes with its
// work); one that ended before b is not seen (its last CPU time is gone
// with it).
func hostCPU(a, b hostSample, orders int64) *HostCPU {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return nil
	}
	h := &HostCPU{BusyCores: round2((b.busy - a.busy) / secs)}
	if orders > 0 {
		h.MsPerOrder = round2((b.busy - a.busy) * 1000 / float64(orders))
		h.SwitchesPerOrder = math.Round(float64(b.switches-a.switches) / float64(orders))
	}
	byName := map[string]float64{}
	for pid, p := range b.procs {
		used := p.cpu
		if before, ok := a.procs[pid]; ok && before.start == p.start {
			used -= before.cpu
		}
		byName[programName(p.comm)] += used
	}
	for name, cpu := range byName {
		if cores := cpu / secs; cores >= 0.01 {
			h.ByProcess = append(h.ByProcess, ProcessCPU{Name: name, Cores: round2(cores)})
		}
	}
	sort.Slice(h.ByProcess, func(i, j int) bool {
		if h.ByProcess[i].Cores != h.ByProcess[j].Cores {
			return h.ByProcess[i].Cores > h.ByProcess[j].Cores
		}
		return h.ByProcess[i].Name < h.ByProcess[j].Name
	})
	return h
}

// programName groups the kernel's worker threads, whose names say what
// they are working on at the moment (kworker/u8:1-flush-254:0), as one.
func programName(comm string) string {
	for _, k := range []string{"kworker", "ksoftirqd"} {
		if strings.HasPrefix(comm, k) {
			return k
		}
	}
	return comm
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
