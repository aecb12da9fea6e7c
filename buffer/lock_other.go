//go:build !unix

package buffer

import (
	"errors"
	"os"
)

const lockName = "edged-lock"

// lockDir is not available here: without the lock the store is never
// closed while idle (Badger's own lock then always guards it).
func lockDir(string) (*os.File, error) { return nil, errors.New("no directory lock on this platform") }
