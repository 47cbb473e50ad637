package platform

import "runtime/debug"

// GCPercent is the garbage collector's target (GOGC) the services run with
// unless GOGC is set. Their live heap is small, a few tens of MB, and nearly
// all they allocate lives for one request or message, so with Go's default
// of 100 the collector runs many times a second under load. At 400 the heap
// may grow to five times what is live before a cycle: the services' peak RSS
// went from about 45 to about 75 MB at saturation, and the services spent
// less CPU per order (docs/performance.md, the ablation). Where
// memory is bounded, GOMEMLIMIT (which the Pulumi program sets) makes the
// collector run earlier as the heap nears it.
const GCPercent = 400

// SetGCPercent sets the collector's target to GCPercent, unless GOGC in
// getenv names one (the runtime has read it already). It returns the target
// in effect.
func SetGCPercent(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		old := debug.SetGCPercent(-1)
		debug.SetGCPercent(old)
		return old
	}
	debug.SetGCPercent(GCPercent)
	return GCPercent
}
