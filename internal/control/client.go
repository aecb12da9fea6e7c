package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/edged-gw/edged/southbound/door"
)

// ErrNoDaemon says no daemon answers on the socket: it does not exist, or
// it is left over from a daemon that is gone.
var ErrNoDaemon = errors.New("no edged daemon runs")

// ErrNoAnswer says the daemon took the request and closed the connection
// without answering (it stopped or crashed meanwhile): the write may or
// may not have reached the device.
var ErrNoAnswer = errors.New("the daemon closed the connection without answering")

func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "unix", path)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOTSOCK):
		return nil, fmt.Errorf("%w (no answer on %s)", ErrNoDaemon, path)
	case errors.Is(err, os.ErrPermission):
		// Whether a daemon runs cannot be told: do not open the device.
		return nil, fmt.Errorf("the control socket %s refuses you: run as root or as a member of group %q (%w)", path, Group, err)
	}
	return nil, fmt.Errorf("control socket %s: %w", path, err)
}

// roundTrip sends one request and reads the one response; the connection
// may stay open until deadline.
func roundTrip(ctx context.Context, path string, req Request, deadline time.Time) (Response, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return Response{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(deadline)
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("control socket %s: send: %w", path, err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, maxRequest)).ReadBytes('\n')
	if err != nil {
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return Response{}, fmt.Errorf("control socket %s: no answer: %w", path, ctx.Err())
		case errors.As(err, &ne) && ne.Timeout():
			return Response{}, fmt.Errorf("control socket %s: no answer in time", path)
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			return Response{}, fmt.Errorf("control socket %s: %w", path, ErrNoAnswer)
		}
		return Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket %s: the answer is not JSON: %v", path, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("control socket %s: the daemon says: %s", path, resp.Error)
	}
	return resp, nil
}

// Ping reports whether a daemon answers on path: nil, an error wrapping
// ErrNoDaemon, or another error (e.g. the socket refuses this user).
func Ping(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := roundTrip(ctx, path, Request{Op: "ping"}, time.Now().Add(3*time.Second))
	if err != nil {
		return err
	}
	if !resp.Pong {
		return fmt.Errorf("control socket %s: not an edged daemon's answer", path)
	}
	return nil
}

// Write hands a write to the daemon on path and returns the door's
// result. timeout bounds the daemon's part (the write and its read back);
// the client waits a little longer for the answer.
func Write(ctx context.Context, path string, req Request, timeout time.Duration) (door.Result, error) {
	req.Op = "write"
	req.TimeoutMs = timeout.Milliseconds()
	resp, err := roundTrip(ctx, path, req, time.Now().Add(timeout+5*time.Second))
	if err != nil {
		return door.Result{}, err
	}
	if resp.Result == nil {
		return door.Result{}, fmt.Errorf("control socket %s: the answer has no result", path)
	}
	return *resp.Result, nil
}
