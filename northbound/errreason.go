package northbound

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// ErrBrokerRefused is wrapped by the error of a CONNECT the broker
// answered with a refusal (bad credentials, not authorized, a client id it
// does not accept).
var ErrBrokerRefused = errors.New("broker refused the connection")

// ErrorReasons are the values ErrorReason returns: a small, fixed set, so
// that a label made of them (edged_uplink_last_error_info{reason}) has a
// bounded number of series, whatever the errors' text says.
var ErrorReasons = []string{"dns", "connection_refused", "timeout", "tls", "broker_refused", "connection_lost", "other"}

// ErrorReason names why a connection failed, for metrics: one of
// ErrorReasons. The error's text (host names, addresses, the broker's own
// words) stays in logs and /readyz, never in a label value.
func ErrorReason(err error) string {
	var dns *net.DNSError
	var tlsErr *TLSError
	var to interface{ Timeout() bool }
	switch {
	case err == nil:
		return ""
	case errors.As(err, &tlsErr):
		return "tls"
	case errors.Is(err, ErrBrokerRefused):
		return "broker_refused"
	case errors.As(err, &dns):
		return "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &to) && to.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "connection_lost"
	}
	return "other"
}
