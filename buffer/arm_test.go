package buffer

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// TestARMv7 runs this package's tests built for 32-bit ARM under
// qemu-arm-static: Badger's mmap of value-log and memtable files must fit
// a 32-bit address space with the sizes Open uses.
func TestARMv7(t *testing.T) {
	if runtime.GOARCH == "arm" || os.Getenv("EDGED_IN_QEMU") != "" {
		t.Skip("already running under emulation") // the only skip: this is the emulated run itself
	}
	qemu, err := exec.LookPath("qemu-arm-static")
	if err != nil {
		t.Fatalf("qemu-arm-static not found: run `make test-deps` (installs Debian's qemu-user-static)")
	}
	goBin := runtime.GOROOT() + "/bin/go" //lint:ignore SA1019 the go that built this test binary, on this machine
	cmd := exec.Command(goBin, "test", "-count=1", "-exec", qemu, "-run", "TestQueueModel|TestCapDropsOldestExactly|TestBrokenStoreMovedAside", "-rapid.checks=10", ".")
	cmd.Env = append(os.Environ(), "GOARCH=arm", "GOARM=7", "CGO_ENABLED=0", "EDGED_IN_QEMU=1", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("buffer tests under qemu-arm-static (GOARCH=arm GOARM=7): %v", err)
	}
}
