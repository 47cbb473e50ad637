// Package rabbitcluster starts a three-node RabbitMQ cluster on loopback for
// a test, from the RabbitMQ server installed on the machine: each node has
// its own node name, ports, configuration, data and log directories under a
// temporary directory, the nodes share an Erlang cookie of their own, and
// they form one cluster at boot (classic peer discovery). The machine's own
// RabbitMQ (5672) is neither used nor touched. Everything is torn down when
// the test ends, however it ends; a test process that dies takes its nodes
// with it (parent-death signal).
//
// Where no node can be started (no server installed, no rabbitmq user to
// run it as, a node that does not boot), the test is skipped with the
// reason, never passed. Import it from tests only.
package rabbitcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Size is the number of nodes: the smallest cluster in which a quorum
// queue survives the loss of one node (Amazon MQ's cluster deployment).
const Size = 3

// BootTimeout bounds one node's boot.
const BootTimeout = 90 * time.Second

// Node is one RabbitMQ node of the cluster.
type Node struct {
	Name     string // rc<id>-<n>@localhost
	AMQPPort int
	MgmtPort int
	DistPort int

	dir     string
	env     []string
	cred    *syscall.Credential
	server  string
	logFile string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Cluster is three running nodes joined into one cluster.
type Cluster struct {
	Nodes []*Node
	dir   string
}

// serverScript finds the server's start script: TEST_RABBITMQ_SERVER,
// Debian's and RabbitMQ's generic layout, or rabbitmq-server on PATH.
func serverScript() (string, error) {
	if s := os.Getenv("TEST_RABBITMQ_SERVER"); s != "" {
		return s, nil
	}
	// /usr/sbin/rabbitmq-server on Debian is a wrapper that switches user
	// and redirects the output to /var/log: the real script is here.
	const debian = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	s, err := exec.LookPath("rabbitmq-server")
	if err != nil {
		return "", errors.New("no rabbitmq-server installed (set TEST_RABBITMQ_SERVER to its start script)")
	}
	return s, nil
}

// runAs is the user the nodes run as: the rabbitmq user when the test runs
// as root (RabbitMQ's packages run the server as rabbitmq), else the test's
// own user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		return nil, fmt.Errorf("running as root, and no rabbitmq user to run the nodes as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Start starts the cluster and waits until all three nodes run in it. It
// skips the test under -short, and with the reason when the machine cannot
// run the nodes.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("cluster test: starts three RabbitMQ nodes (run without -short)")
	}
	server, err := serverScript()
	if err != nil {
		tb.Skipf("cannot start a RabbitMQ cluster here: %v", err)
	}
	cred, err := runAs()
	if err != nil {
		tb.Skipf("cannot start a RabbitMQ cluster here: %v", err)
	}
	// Not tb.TempDir: its parents are private to the test's user, and the
	// nodes run as rabbitmq.
	dir, err := os.MkdirTemp("", "rabbitcluster-") //nolint:usetesting // see above
	if err != nil {
		tb.Fatalf("temp dir: %v", err)
	}
	c := &Cluster{dir: dir}
	tb.Cleanup(func() { c.teardown(tb) })

	id := randomHex(4)
	cookie := strings.ToUpper(randomHex(16))
	names := make([]string, Size)
	for i := range names {
		names[i] = fmt.Sprintf("rc%s-%d@localhost", id, i+1)
	}
	ports, err := freePorts(3 * Size)
	if err != nil {
		tb.Fatalf("free ports: %v", err)
	}
	for i := range Size {
		n := &Node{
			Name: names[i], AMQPPort: ports[3*i], MgmtPort: ports[3*i+1], DistPort: ports[3*i+2],
			dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)), cred: cred, server: server,
		}
		if err := n.prepare(filepath.Join(dir, "home"), names); err != nil {
			tb.Fatalf("prepare %s: %v", n.Name, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	if err := writeFile(filepath.Join(dir, "home", ".erlang.cookie"), cookie, 0o400, cred); err != nil {
		tb.Fatalf("cookie: %v", err)
	}
	if err := chownTree(dir, cred); err != nil {
		tb.Fatalf("chown %s: %v", dir, err)
	}

	// The first node forms the cluster; the others find it running and
	// join it (peer discovery picks a running peer).
	begin := time.Now()
	if err := c.Nodes[0].start(); err != nil {
		tb.Skipf("cannot start a RabbitMQ node here: %v", err)
	}
	first := time.Since(begin)
	errs := make(chan error, Size-1)
	for _, n := range c.Nodes[1:] {
		go func() { errs <- n.start() }()
	}
	for range Size - 1 {
		if err := <-errs; err != nil {
			tb.Skipf("cannot start a RabbitMQ node here: %v", err)
		}
	}
	if err := c.WaitRunning(BootTimeout, c.Nodes...); err != nil {
		tb.Fatalf("the nodes did not form one cluster: %v", err)
	}
	tb.Logf("rabbitcluster: %d nodes %v joined in %s, the first booted in %s (AMQP %v)", Size, names,
		time.Since(begin).Round(100*time.Millisecond), first.Round(100*time.Millisecond), c.AMQPAddrs())
	return c
}

// prepare writes the node's configuration and directories.
func (n *Node) prepare(home string, peers []string) error {
	for _, d := range []string{home, n.dir, filepath.Join(n.dir, "mnesia"), filepath.Join(n.dir, "log")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "listeners.tcp.1 = 127.0.0.1:%d\n", n.AMQPPort)
	fmt.Fprintf(&conf, "management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n", n.MgmtPort)
	// Fresh figures in the management API (queue leaders and members).
	conf.WriteString("collect_statistics_interval = 500\n")
	conf.WriteString("cluster_formation.peer_discovery_backend = classic_config\n")
	for i, p := range peers {
		fmt.Fprintf(&conf, "cluster_formation.classic_config.nodes.%d = %s\n", i+1, p)
	}
	// As deploy/rabbitmq/cluster.conf: a node cut off from the two others
	// pauses; the two others go on.
	conf.WriteString("cluster_partition_handling = pause_minority\n")
	conf.WriteString("log.file.level = info\nlog.console = false\n")
	n.logFile = filepath.Join(n.dir, "log", n.Name+".log")
	files := map[string]string{
		"rabbitmq.conf":     conf.String(),
		"enabled_plugins":   "[rabbitmq_management].\n",
		"rabbitmq-env.conf": "# this node's environment is set by rabbitcluster\n",
	}
	for name, content := range files {
		if err := writeFile(filepath.Join(n.dir, name), content, 0o640, nil); err != nil {
			return err
		}
	}
	n.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home, // its .erlang.cookie is the cluster's
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"RABBITMQ_NODENAME=" + n.Name,
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(n.DistPort),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(n.dir, "advanced.config"), // absent
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(n.dir, "rabbitmq-env.conf"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(n.dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(n.dir, "enabled_plugins"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		// Run the VM in place of the start script (no shell in between),
		// so the process started is the node: SIGKILL reaches it, and so
		// does the parent-death signal. -noshell keeps stdin unread.
		"RABBITMQ_ALLOW_INPUT=true",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noshell -kernel inet_dist_use_interface {127,0,0,1}",
	}
	return nil
}

// start starts the node's process and waits until it takes AMQP
// connections.
func (n *Node) start() error {
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open stdout log: %w", err)
	}
	cmd := exec.Command(n.server) //nolint:gosec,noctx // the installed server; its lifetime is the node's, not a context's
	cmd.Env = n.env
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: n.cred}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("start %s: %w", n.server, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(exited)
	}()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()

	deadline := time.Now().Add(BootTimeout)
	for {
		conn, err := amqp091.Dial(n.amqpURL())
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("node %s exited while booting (%s): %s", n.Name, cmd.ProcessState, n.Tail(20))
		default:
		}
		if time.Now().After(deadline) {
			n.Kill()
			return fmt.Errorf("node %s did not take AMQP connections within %s: %s", n.Name, BootTimeout, n.Tail(20))
		}
		time.Sleep(100 * time.Millisecond) // polling the booting node, with a deadline
	}
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the node (its whole process group) and waits until
// it is gone: a crash, with no chance to hand anything over.
func (n *Node) Kill() { n.signal(syscall.SIGKILL, 0) }

// Stop stops the node gracefully (SIGTERM, as a service manager does),
// killing it after timeout.
func (n *Node) Stop(timeout time.Duration) { n.signal(syscall.SIGTERM, timeout) }

func (n *Node) signal(sig syscall.Signal, timeout time.Duration) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	pgid := cmd.Process.Pid
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-pgid, sig)
		<-exited
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	// What the VM started (erl_child_setup, inet_gethost) goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Restart starts a stopped or killed node again with its data, and waits
// until it takes AMQP connections.
func (n *Node) Restart() error {
	if n.Running() {
		return fmt.Errorf("node %s is running", n.Name)
	}
	return n.start()
}

// AMQPAddr is the node's AMQP host:port.
func (n *Node) AMQPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.AMQPPort)) }

func (n *Node) amqpURL() string { return "amqp://guest:guest@" + n.AMQPAddr() + "/" }

// ManagementURL is the node's management API base URL.
func (n *Node) ManagementURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.MgmtPort))
}

// Tail returns the last lines of the node's log (and of its output when it
// wrote any).
func (n *Node) Tail(lines int) string {
	var b strings.Builder
	for _, f := range []string{filepath.Join(n.dir, "stdout.log"), n.logFile} {
		raw, err := os.ReadFile(f) //nolint:gosec // the node's own log
		if err != nil || len(raw) == 0 {
			continue
		}
		ls := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		fmt.Fprintf(&b, "\n--- %s ---\n%s", filepath.Base(f), strings.Join(ls[max(0, len(ls)-lines):], "\n"))
	}
	return b.String()
}

// AMQPAddrs are the nodes' AMQP host:ports, the targets of a balancer.
func (c *Cluster) AMQPAddrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.AMQPAddr()
	}
	return addrs
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeStatus is a node as the management API lists it.
type NodeStatus struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
}

// ClusterNodes lists the cluster's nodes, asked of the first running node
// that answers.
func (c *Cluster) ClusterNodes() ([]NodeStatus, error) {
	var nodes []NodeStatus
	return nodes, c.get("/api/nodes?columns=name,running", &nodes)
}

// WaitRunning waits until every node in want runs and the cluster lists it
// running.
func (c *Cluster) WaitRunning(timeout time.Duration, want ...*Node) error {
	deadline := time.Now().Add(timeout)
	for {
		nodes, err := c.ClusterNodes()
		if err == nil {
			running := map[string]bool{}
			for _, n := range nodes {
				running[n.Name] = n.Running
			}
			var missing []string
			for _, n := range want {
				if !running[n.Name] {
					missing = append(missing, n.Name)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			err = fmt.Errorf("not running in the cluster: %v (the cluster lists %+v)", missing, nodes)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond) // polling the management API, with a deadline
	}
}

// Queue is a queue as the management API reports it: for a quorum queue,
// its leader and members.
type Queue struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Node     string   `json:"node"`
	Leader   string   `json:"leader"`
	Members  []string `json:"members"`
	Online   []string `json:"online"`
	Messages int      `json:"messages"`
}

// QueueInfo reports a queue of the default vhost.
func (c *Cluster) QueueInfo(name string) (Queue, error) {
	var q Queue
	return q, c.get("/api/queues/%2F/"+url.PathEscape(name), &q)
}

// get asks the running nodes' management API in turn until one answers.
func (c *Cluster) get(path string, v any) error {
	var errs []error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		err := getJSON(n.ManagementURL()+path, v)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
	}
	if len(errs) == 0 {
		return errors.New("no node is running")
	}
	return errors.Join(errs...)
}

func getJSON(rawURL string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("management API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read management API answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management API %s: %s %s", req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode management API answer: %w", err)
	}
	return nil
}

func (c *Cluster) teardown(tb testing.TB) {
	tb.Helper()
	for _, n := range c.Nodes {
		if tb.Failed() {
			tb.Logf("rabbitcluster: %s%s", n.Name, n.Tail(30))
		}
		n.Kill()
	}
	if err := os.RemoveAll(c.dir); err != nil {
		tb.Errorf("remove %s: %v", c.dir, err)
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeFile(path, content string, mode os.FileMode, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if cred != nil {
		if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	//nolint:wrapcheck // the walk's own error, wrapped by the caller
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid)) //nolint:gosec // the directory this package just made
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
