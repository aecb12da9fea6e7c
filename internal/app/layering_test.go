package app

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoProtocolBelowTheHost: the wiring, the metrics, the console and the
// CLI's own code know no protocol: a driver is one folder under southbound
// and one line in southbound/all (DESIGN: "A new protocol costs one folder
// plus one line").
func TestNoProtocolBelowTheHost(t *testing.T) {
	for _, pkg := range []string{"./internal/app", "./internal/metrics", "./internal/console", "./internal/control", "./southbound/door"} {
		out, err := exec.Command("go", "list", "-deps", "../../"+strings.TrimPrefix(pkg, "./")).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, proto := range []string{"/southbound/modbus", "/southbound/opcua", "/southbound/serial"} {
				if strings.HasSuffix(dep, proto) {
					t.Errorf("%s depends on the protocol package %s", pkg, dep)
				}
			}
		}
	}
}
