package modbussim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// ErrNoSocat means socat is not installed; `make test-deps` installs it.
var ErrNoSocat = errors.New("socat not found: run `make test-deps` (Debian package socat)")

// PtyPair is a virtual serial cable made by socat: what is written to one
// end is read at the other. A pty has no baud rate; see RTUOptions.Baud.
type PtyPair struct {
	A, B   string // paths of the two ends (symlinks to /dev/pts/N)
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

// StartPtyPair starts socat with the two ends linked as dir/a and dir/b and
// waits until both links exist. Close kills socat (both ends then fail,
// as a USB adapter that was unplugged); starting again on the same dir
// makes the same paths work again.
func StartPtyPair(dir string) (*PtyPair, error) {
	bin, err := exec.LookPath("socat")
	if err != nil {
		return nil, ErrNoSocat
	}
	p := &PtyPair{A: filepath.Join(dir, "a"), B: filepath.Join(dir, "b")}
	os.Remove(p.A)
	os.Remove(p.B)
	p.cmd = exec.Command(bin, "-d", "-d",
		"pty,raw,echo=0,link="+p.A, "pty,raw,echo=0,link="+p.B)
	p.cmd.Stderr = &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start socat: %w", err)
	}
	exited := make(chan struct{})
	p.exited = exited
	go func() { p.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ea := os.Stat(p.A)
		_, eb := os.Stat(p.B)
		if ea == nil && eb == nil {
			return p, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("socat exited before making the pty pair")
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("socat made no pty pair in 10s")
		}
	}
}

// Close kills socat and waits for it.
func (p *PtyPair) Close() error {
	p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
	os.Remove(p.A)
	os.Remove(p.B)
	return nil
}
