// Package control is the running daemon's local control socket: a Unix
// socket under the data dir (control.sock, mode 0660, group edged when that
// group exists) on which `edged write` hands its write to the daemon's
// write door and gets the structured result back. The protocol is one JSON
// request line and one JSON response line per connection.
//
// It knows the door and the gateway's public view of its devices; it knows
// no protocol.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/edged-gw/edged/southbound/door"
)

// SocketName is the control socket's file name in the data dir.
const SocketName = "control.sock"

// SocketPath is the control socket of a daemon with this data dir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// Group owns the socket when it exists, so that its members may write.
const Group = "edged"

// Request is one line from a client.
type Request struct {
	Op     string          `json:"op"` // "write" or "ping"
	Device string          `json:"device,omitempty"`
	Tag    string          `json:"tag,omitempty"`
	Text   string          `json:"text,omitempty"`  // command-line text, parsed for the tag's type
	Value  json.RawMessage `json:"value,omitempty"` // or a bare JSON value
	ID     string          `json:"id,omitempty"`
	// TimeoutMs bounds the write and its read back; default 10 s, at most
	// MaxTimeout.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
}

// Response is the one line the daemon answers.
type Response struct {
	Error  string       `json:"error,omitempty"` // the request could not be read
	Pong   bool         `json:"pong,omitempty"`
	PID    int          `json:"pid,omitempty"`
	Result *door.Result `json:"result,omitempty"`
}

// Limits of the socket.
const (
	DefaultTimeout = 10 * time.Second
	MaxTimeout     = 5 * time.Minute
	maxRequest     = 128 << 10
	maxClients     = 16
	readTimeout    = 5 * time.Second
)

// Server answers on the control socket.
type Server struct {
	door      *door.Door
	log       *slog.Logger
	path      string
	ln        *net.UnixListener
	ino       uint64 // the socket file's inode, removed at Close only if still ours
	sem       chan struct{}
	accepting chan struct{} // closed when the accept loop has ended
	once      sync.Once
}

// Listen creates the socket at path and serves d on it. If a daemon
// already answers there, it fails and leaves that socket alone; a stale
// socket (nobody answers) is replaced. The socket appears atomically with
// its final mode and group: it is made under a temporary name, then
// renamed.
func Listen(path string, d *door.Door, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, fmt.Sprintf(".ctl%d", os.Getpid()))
	if n := len(path); n > maxSocketPath || len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is %d bytes, a Unix socket path may have at most %d: use a shorter data_dir", path, n, maxSocketPath)
	}
	if err := Ping(path); err == nil {
		return nil, fmt.Errorf("control socket %s: another edged answers there (two daemons with one data_dir?)", path)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(err)
	}
	// Under systemd (Group=edged) the socket is the group's already, and
	// the unit's system call filter refuses chown: only change it when it
	// is not.
	if g, err := user.LookupGroup(Group); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil && gid != os.Getegid() {
			if err := os.Chown(tmp, -1, gid); err != nil {
				log.Warn("control socket: cannot give it to group "+Group+"; only its owner can use edged write", "path", path, "err", err)
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	s := &Server{door: d, log: log, path: path, ln: ln, sem: make(chan struct{}, maxClients), accepting: make(chan struct{})}
	if st, err := os.Stat(path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			s.ino = sys.Ino
		}
	}
	go s.accept()
	return s, nil
}

// maxSocketPath is what fits in sockaddr_un's sun_path with its NUL.
const maxSocketPath = 107

// Path is where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops accepting and removes the socket file (if it is still this
// server's). Requests in progress are still answered: a write on its way
// finishes, or fails as its device stops.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		if st, serr := os.Stat(s.path); serr == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Ino == s.ino {
				os.Remove(s.path)
			}
		}
		<-s.accepting
	})
	return err
}

func (s *Server) accept() {
	defer close(s.accepting)
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("control socket: accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			writeResponse(c, Response{Error: "busy: too many control connections"})
			c.Close()
			continue
		}
		go func() {
			defer func() { <-s.sem }()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c *net.UnixConn) {
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, maxRequest)).ReadBytes('\n')
	if err != nil {
		if len(line) >= maxRequest {
			writeResponse(c, Response{Error: fmt.Sprintf("request longer than %d bytes", maxRequest)})
		} else if len(line) > 0 {
			writeResponse(c, Response{Error: "the request ends without a newline"})
		}
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		writeResponse(c, Response{Error: "the request is not JSON: " + err.Error()})
		return
	}
	switch req.Op {
	case "ping":
		writeResponse(c, Response{Pong: true, PID: os.Getpid()})
		return
	case "write":
	default:
		writeResponse(c, Response{Error: fmt.Sprintf("unknown op %q: allowed are write, ping", req.Op)})
		return
	}
	src := peer(c)
	s.log.Info("write requested on the control socket", "device", req.Device, "tag", req.Tag, "source", src.String())
	timeout := DefaultTimeout
	if req.TimeoutMs > 0 {
		timeout = min(time.Duration(req.TimeoutMs)*time.Millisecond, MaxTimeout)
	}
	// The write is not tied to the connection: a client that goes away
	// does not cancel a write already on its way (it is audited anyway).
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res := s.door.Write(ctx, door.Request{Device: req.Device, Tag: req.Tag, Text: req.Text, Value: req.Value, ID: req.ID, Source: src})
	if err := writeResponse(c, Response{Result: &res}); err != nil {
		s.log.Warn("control socket: the client left before the answer", "device", req.Device, "tag", req.Tag, "err", err)
	}
}

func writeResponse(c net.Conn, r Response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_ = c.SetWriteDeadline(time.Now().Add(readTimeout))
	_, err = c.Write(append(b, '\n'))
	return err
}

// peer names the connecting process from the kernel's credentials.
func peer(c *net.UnixConn) door.Source {
	src := door.Source{Kind: door.FromCLI}
	raw, err := c.SyscallConn()
	if err != nil {
		return src
	}
	var cred *syscall.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cred == nil {
		return src
	}
	src.Name = "pid " + strconv.Itoa(int(cred.Pid))
	src.User = "uid " + strconv.Itoa(int(cred.Uid))
	if u, err := user.LookupId(strconv.Itoa(int(cred.Uid))); err == nil {
		src.User = u.Username
	}
	return src
}
