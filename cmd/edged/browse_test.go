package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// edged browse against gopcua's in-process server: the tree shows NodeIds,
// data types and access, --toml prints tags that name the nodes.
func TestBrowse(t *testing.T) {
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := server.New(server.EndPoint("127.0.0.1", port),
		server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous))
	ns := server.NewMapNamespace(s, "plant")
	ns.Data["Speed"] = 12.5
	ns.Data["Mode"] = "AUTO"
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)

	var out, errOut bytes.Buffer
	if code := run([]string{"browse", endpoint, "--node", "ns=1;i=85", "--depth", "1", "--data-dir", t.TempDir()}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"1:Speed  ns=1;s=Speed  Double  read/write", "1:Mode  ns=1;s=Mode  String"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tree lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"browse", "--toml", "--node", "ns=1;i=85", endpoint, "--data-dir", t.TempDir()}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// Node ids outside namespace 0 by namespace URI: indices may change.
	if !strings.Contains(out.String(), "[[device.tag]]\nname = \"Speed\"\nnode = \"nsu=plant;s=Speed\"") {
		t.Errorf("--toml output:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"browse", endpoint, "--node", "nsu=plant;i=85", "--data-dir", t.TempDir()}, &out, &errOut); code != exitOK {
		t.Fatalf("--node by namespace URI: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "1:Speed  ns=1;s=Speed") {
		t.Errorf("tree from nsu=plant;i=85 lacks Speed:\n%s", out.String())
	}
	if code := run([]string{"browse"}, &out, &errOut); code != exitUsage {
		t.Errorf("no endpoint: exit %d", code)
	}
}

// TestBrowseTOMLValidates: what `edged browse --toml` prints from the
// Objects folder (the default: the server's own nodes too, several with
// the same display name) pastes under a [[device]] and validates as it is.
func TestBrowseTOMLValidates(t *testing.T) {
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := server.New(server.EndPoint("127.0.0.1", port),
		server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous))
	ns := server.NewMapNamespace(s, "plant")
	ns.Data["Speed"] = 12.5
	ns.Data["Line 1/Mode"] = "AUTO"
	ns.Data["State"] = int32(3) // as the server's ServerStatus.State
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)

	var out, errOut bytes.Buffer
	if code := run([]string{"browse", "--toml", endpoint, "--data-dir", t.TempDir()}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "[[device.tag]]"); n < 5 {
		t.Fatalf("only %d tags:\n%s", n, out.String())
	}
	cfg := "[gateway]\nid = \"g\"\n\n[[device]]\nname = \"plc\"\ndriver = \"opcua\"\nendpoint = \"" + endpoint + "\"\n\n" + out.String()
	path := writeConfig(t, t.TempDir(), cfg)
	code, stdout, stderr := runCLI("validate", "-c", path)
	if code != exitOK {
		t.Errorf("validate: exit %d\n%s\nconfig:\n%s", code, stderr, cfg)
	}
	t.Log(stdout)
}
