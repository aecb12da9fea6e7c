//go:build unix

package buffer

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// lockName is the queue's lock file in its directory (see idle.go).
const lockName = "edged-lock"

// lockDir takes the queue's lock on dir: errLocked if another process
// holds it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}
