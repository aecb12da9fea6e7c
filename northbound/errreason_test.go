package northbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// TestErrorReasonIsBounded: the errors an uplink meets on real sockets
// come out as one of the fixed reasons, never as their text.
func TestErrorReasonIsBounded(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	_, refused := net.Dial("tcp", addr)

	// A listener that never answers: a TLS handshake against it times out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	c, err := net.Dial("tcp", silent.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Millisecond))
	timeout := tls.Client(c, &tls.Config{ServerName: "x"}).Handshake()

	_, dns := (&net.Resolver{PreferGo: true}).LookupHost(context.Background(), "no-such-host.invalid")

	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial: %w", refused), "connection_refused"},
		{fmt.Errorf("connect: %w", timeout), "timeout"},
		{fmt.Errorf("dial: %w", dns), "dns"},
		{&TLSError{Reason: "unknown authority", Err: io.EOF}, "tls"},
		{fmt.Errorf("%w: Not authorized (reason 0x87)", ErrBrokerRefused), "broker_refused"},
		{fmt.Errorf("connection lost: %w", io.EOF), "connection_lost"},
		{fmt.Errorf("something no one foresaw"), "other"},
	} {
		got := ErrorReason(tc.err)
		if got != tc.want || !slices.Contains(ErrorReasons, got) {
			t.Errorf("ErrorReason(%v) = %q, want %q (one of %v)", tc.err, got, tc.want, ErrorReasons)
		}
	}
	if ErrorReason(nil) != "" {
		t.Error("a nil error has a reason")
	}
}
