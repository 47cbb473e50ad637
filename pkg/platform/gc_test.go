package platform_test

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/orderflow/orderflow/pkg/platform"
)

// Not parallel: the collector's target is the process's.
func TestSetGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	assert.Equal(t, platform.GCPercent, platform.SetGCPercent(env(nil)), "no GOGC: the services' own")
	assert.Equal(t, platform.GCPercent, debug.SetGCPercent(100))

	// GOGC set: the runtime read it at start; here the target it left is 100.
	assert.Equal(t, 100, platform.SetGCPercent(env(map[string]string{"GOGC": "100"})))
	assert.Equal(t, 100, debug.SetGCPercent(100), "left as the environment set it")
}
