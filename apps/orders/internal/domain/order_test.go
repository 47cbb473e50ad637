package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
)

func ptr[T any](v T) *T { return &v }

func TestNewOrder_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     domain.NewOrder
		fields []string
	}{
		{"valid", domain.NewOrder{CustomerID: ptr("c-1"), Amount: ptr(int64(1999)), Currency: ptr("EUR")}, nil},
		{"max amount", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(domain.MaxAmount)), Currency: ptr("JPY")}, nil},
		{"all missing", domain.NewOrder{}, []string{"customer_id", "amount", "currency"}},
		{"empty customer", domain.NewOrder{CustomerID: ptr(""), Amount: ptr(int64(1)), Currency: ptr("EUR")}, []string{"customer_id"}},
		{"blank customer", domain.NewOrder{CustomerID: ptr("   "), Amount: ptr(int64(1)), Currency: ptr("EUR")}, []string{"customer_id"}},
		{"control char", domain.NewOrder{CustomerID: ptr("c\x00"), Amount: ptr(int64(1)), Currency: ptr("EUR")}, []string{"customer_id"}},
		{"customer too long", domain.NewOrder{CustomerID: ptr(strings.Repeat("x", 65)), Amount: ptr(int64(1)), Currency: ptr("EUR")}, []string{"customer_id"}},
		{"zero amount", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(0)), Currency: ptr("EUR")}, []string{"amount"}},
		{"negative amount", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(-5)), Currency: ptr("EUR")}, []string{"amount"}},
		{"amount over limit", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(domain.MaxAmount + 1)), Currency: ptr("EUR")}, []string{"amount"}},
		{"unknown currency", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(1)), Currency: ptr("ABC")}, []string{"currency"}},
		{"lowercase currency", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(1)), Currency: ptr("eur")}, []string{"currency"}},
		{"no-currency code", domain.NewOrder{CustomerID: ptr("c"), Amount: ptr(int64(1)), Currency: ptr("XXX")}, []string{"currency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.in.Validate()
			if tt.fields == nil {
				require.NoError(t, err)
				return
			}
			var v *domain.ValidationError
			require.ErrorAs(t, err, &v)
			var got []string
			for _, f := range v.Fields {
				got = append(got, f.Field)
			}
			assert.Equal(t, tt.fields, got)
		})
	}
}

func TestOrder_MarkInvoiced(t *testing.T) {
	t.Parallel()
	now := time.Now()
	o := domain.Order{ID: "o-1", Status: domain.StatusPending}

	changed, err := o.MarkInvoiced("i-1", now)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, domain.StatusInvoiced, o.Status)
	assert.Equal(t, "i-1", o.InvoiceID)

	changed, err = o.MarkInvoiced("i-1", now)
	require.NoError(t, err, "a redelivered event changes nothing")
	assert.False(t, changed)

	_, err = o.MarkInvoiced("i-2", now)
	assert.True(t, errors.Is(err, domain.ErrAlreadyInvoiced))
	assert.Equal(t, "i-1", o.InvoiceID)
}
