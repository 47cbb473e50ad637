package groupcommit_test

import (
	"context"
	"testing"

	"github.com/orderflow/orderflow/pkg/groupcommit"
)

func echo(_ context.Context, items []groupcommit.Item[int]) ([]groupcommit.Result[int], error) {
	out := make([]groupcommit.Result[int], len(items))
	for i, it := range items {
		out[i].Out = it.In
	}
	return out, nil
}

// BenchmarkDo is the committer's own cost per call, around a batch function
// that does nothing, with calls from GOMAXPROCS goroutines at once.
func BenchmarkDo(b *testing.B) {
	c := groupcommit.New(echo, groupcommit.Config{Concurrency: 1})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Do(ctx, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDo_alone is the committer's own cost for a call that finds it
// idle, as most do at moderate load: one caller, one call after another.
func BenchmarkDo_alone(b *testing.B) {
	c := groupcommit.New(echo, groupcommit.Config{Concurrency: 1})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Do(ctx, 1); err != nil {
			b.Fatal(err)
		}
	}
}
