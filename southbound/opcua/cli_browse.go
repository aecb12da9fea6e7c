package opcua

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/southbound"
)

var browseCommand = southbound.Command{Name: "browse", Summary: "ENDPOINT [--node ID] [--depth N] [--toml] [--policy P --mode M] [--user U]  show an OPC UA server's address space", Run: cmdBrowse}

// cmdBrowse prints an OPC UA server's address space as a tree, or with
// --toml the [[device.tag]] tables of its variables. It trusts server
// certificates like the driver does (data dir pki/), so the first browse of
// a secure server explains how to trust it.
func cmdBrowse(env southbound.CommandEnv, args []string, stdout, stderr io.Writer) int {
	fs := southbound.NewFlags("browse", stderr)
	node := fs.String("node", "i=85", "start node (i=85: the Objects folder)")
	depth := fs.Int("depth", 3, "levels to descend")
	asTOML := fs.Bool("toml", false, "print [[device.tag]] tables for the variables found")
	policy := fs.String("policy", "None", "security policy: None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss")
	mode := fs.String("mode", "", "security mode: None, Sign, SignAndEncrypt (default: None with policy None, else SignAndEncrypt)")
	user := fs.String("user", "", "log in with this username; the password comes from $EDGED_OPCUA_PASSWORD")
	dataDir := fs.String("data-dir", configs.DefaultDataDir, "where edged's certificates live (pki/)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	// Accept flags after the endpoint too.
	var endpoint string
	for i, a := range args {
		if !strings.HasPrefix(a, "-") && (i == 0 || !strings.HasPrefix(args[i-1], "-") || strings.Contains(args[i-1], "=") || isBoolFlag(args[i-1])) {
			endpoint = a
			args = append(args[:i:i], args[i+1:]...)
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		return southbound.ExitUsage
	}
	if endpoint == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: edged browse opc.tcp://HOST:PORT [--node ID] [--depth N] [--toml]")
		return southbound.ExitUsage
	}
	opts := BrowseOptions{
		Endpoint: endpoint, SecurityPolicy: *policy, SecurityMode: *mode, DataDir: *dataDir,
		Node: *node, Depth: *depth, Logger: env.Logger,
	}
	if *user != "" {
		opts.Auth, opts.Username, opts.Password = "username", *user, os.Getenv("EDGED_OPCUA_PASSWORD")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	if *asTOML {
		fmt.Fprintf(stdout, "# variables under %s on %s (edged browse --toml); paste into a [[device]] with driver = \"opcua\"\n", *node, endpoint)
	}
	var names TagNames // a device's tag names are unique
	err := Browse(ctx, opts, func(n BrowseNode) {
		if *asTOML {
			if n.Class == ua.NodeClassVariable {
				fmt.Fprintf(stdout, "\n%s", n.TOMLTagNamed(names.Name(n)))
			}
			return
		}
		line := fmt.Sprintf("%s%s  %s", strings.Repeat("  ", n.Depth-1), n.BrowseName, n.NodeID)
		if n.Class == ua.NodeClassVariable {
			line += fmt.Sprintf("  %s  %s", n.DataType, n.Access)
		} else {
			line += "  " + strings.TrimPrefix(n.Class.String(), "NodeClass")
		}
		fmt.Fprintln(stdout, line)
	})
	if err != nil {
		fmt.Fprintf(stderr, "edged browse: %v\n", err)
		return southbound.ExitFailure
	}
	return southbound.ExitOK
}

func isBoolFlag(a string) bool {
	a = strings.TrimLeft(a, "-")
	return a == "toml" || a == "h" || a == "help"
}
