package groupcommit

// Pending reports how many calls wait for a batch (tests only).
func Pending[In, Out any](c *Committer[In, Out]) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
