package httpkit_test

import (
	"testing"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

func BenchmarkDecodeJSONBytes(b *testing.B) {
	body := []byte(`{"customer_id":"c-12345","amount":1999,"currency":"EUR"}`)
	var dst struct {
		CustomerID *string `json:"customer_id"`
		Amount     *int64  `json:"amount"`
		Currency   *string `json:"currency"`
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := httpkit.DecodeJSONBytes(body, &dst); err != nil {
			b.Fatal(err)
		}
	}
}
