package rabbitcluster_test

import (
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/testkit/rabbitcluster"
)

func TestStart_three_nodes_form_one_cluster(t *testing.T) {
	t.Parallel()
	c := rabbitcluster.Start(t)
	nodes, err := c.ClusterNodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != rabbitcluster.Size {
		t.Fatalf("cluster nodes: %+v", nodes)
	}
	n := c.Nodes[1]
	begin := time.Now()
	n.Kill()
	t.Logf("killed in %s", time.Since(begin))
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitRunning(30*time.Second, c.Nodes...); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %s", time.Since(begin))
}
