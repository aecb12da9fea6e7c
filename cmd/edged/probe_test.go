package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/edged-gw/edged/internal/modbussim"
	"github.com/edged-gw/edged/mapping"
)

func checkProbe(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "register 40101 in 1-based 4xxxx notation = address 100") ||
		!strings.Contains(out, "6-digit notation 400101") {
		t.Errorf("no 1-based hint:\n%s", out)
	}
	// float32 row: the CDAB column (the device's order) shows 21.5.
	row := regexp.MustCompile(`(?m)^float32\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$`).FindStringSubmatch(out)
	if row == nil || row[2] != "21.5" || row[1] == "21.5" {
		t.Errorf("float32 row %q, want 21.5 under CDAB only:\n%s", row, out)
	}
	if !regexp.MustCompile(`(?m)^int64\s`).MatchString(out) {
		t.Errorf("no 64-bit rows for 4 registers:\n%s", out)
	}
}

func TestProbeTCP(t *testing.T) {
	sim := startSim(t)
	sim.SetFloat32(modbussim.Holding, 100, 21.5, mapping.OrderCDAB)
	code, out, errOut := runCLI("probe", "--tcp", sim.Addr(), "--unit", "1", "--addr", "100", "--count", "4")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	checkProbe(t, out)
	if code, _, errOut := runCLI("probe", "--addr", "1"); code != exitUsage || !strings.Contains(errOut, "--tcp") {
		t.Errorf("no target: %d %s", code, errOut)
	}
}

func TestProbeRTU(t *testing.T) {
	p, err := modbussim.StartPtyPair(t.TempDir())
	if errors.Is(err, modbussim.ErrNoSocat) {
		t.Fatalf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	sim := modbussim.New()
	sim.SetFloat32(modbussim.Holding, 100, 21.5, mapping.OrderCDAB)
	r, err := sim.ServeRTU(p.B, modbussim.RTUOptions{Units: []byte{3}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	code, out, errOut := runCLI("probe", "--rtu", p.A, "--baud", "9600", "--unit", "3", "--addr", "100", "--count", "4")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	checkProbe(t, out)
}

func TestPortsPrintsHeader(t *testing.T) {
	byIDDir = t.TempDir() // no by-id links here
	code, out, errOut := runCLI("ports")
	if code != exitOK || !strings.HasPrefix(out, "PORT") || !strings.Contains(out, "USB VID:PID") {
		t.Fatalf("exit %d: %q %s", code, out, errOut)
	}
}
