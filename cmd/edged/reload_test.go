package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged-gw/edged/internal/modbussim"
)

func TestSIGHUPReloadsAndRefusesAnInvalidConfig(t *testing.T) {
	sim := modbussim.New()
	if err := sim.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	sim.SetHolding(0, 11, 22)

	dir := t.TempDir()
	path := filepath.Join(dir, "edged.toml")
	cfg := `[gateway]
id = "gw-hup"
[broker]
listen = "127.0.0.1:0"
[metrics]
disabled = true
[[device]]
name = "plc"
driver = "modbus-tcp"
address = "` + sim.Addr() + `"
poll_interval = "100ms"
  [[device.tag]]
  name = "a"
  area = "holding_register"
  address = 0
  type = "uint16"
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, out := startRun(t, path)
	m := out.wait(t, 15*time.Second, regexp.MustCompile(`local broker listening.*address=(127\.0\.0\.1:\d+)`))
	sub := mosquittoSub(t, m[1], "-t", "edged/gw-hup/#", "-v")
	subOut := &lineWriter{}
	sub.Stdout = subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	subOut.wait(t, 15*time.Second, regexp.MustCompile(`^edged/gw-hup/plc/a .*"v":11,`))

	// Add a tag and reload.
	more := cfg + "\n  [[device.tag]]\n  name = \"b\"\n  area = \"holding_register\"\n  address = 1\n  type = \"uint16\"\n"
	if err := os.WriteFile(path, []byte(more), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	subOut.wait(t, 15*time.Second, regexp.MustCompile(`^edged/gw-hup/plc/b .*"v":22,`))
	out.wait(t, 5*time.Second, regexp.MustCompile(`config reloaded.*restarted=\[plc\]`))

	// An invalid file is refused; the process keeps running the old config.
	if err := os.WriteFile(path, []byte(strings.Replace(more, `poll_interval = "100ms"`, `poll_interval = "often"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	out.wait(t, 15*time.Second, regexp.MustCompile(`config error, keeping the running config.*invalid duration \\"often\\"`))
	sim.SetHolding(1, 23)
	subOut.wait(t, 15*time.Second, regexp.MustCompile(`^edged/gw-hup/plc/b .*"v":23,`))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("edged run exited with %v after a refused reload", err)
	}
}
