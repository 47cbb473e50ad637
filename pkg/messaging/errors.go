package messaging

import (
	"errors"
	"strings"
)

// permanentError marks a failure that no retry can fix: an undecodable
// payload, an invalid event, an unknown event version. Such a message goes to
// the poison queue at once instead of burning its retries.
type permanentError struct{ err error }

func (e permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent. A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// IsNotConfirmed reports whether err is RabbitMQ refusing a publish (a
// negative confirm); watermill-amqp says so only in its error text.
func IsNotConfirmed(err error) bool {
	return err != nil && strings.Contains(err.Error(), "delivery not confirmed")
}
