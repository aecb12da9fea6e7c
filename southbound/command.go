package southbound

import (
	"flag"
	"io"
	"log/slog"
	"sync"

	"github.com/edged-gw/edged/configs"
)

// Command is a subcommand a protocol package adds to edged (edged plan,
// probe, browse): registered from the package's init, next to the
// protocol it knows, and listed by cmd/edged with its own.
type Command struct {
	Name    string
	Summary string // one line for the usage text, starting with its flags
	Run     func(env CommandEnv, args []string, stdout, stderr io.Writer) int
}

// CommandEnv is what cmd/edged gives a protocol's subcommand.
type CommandEnv struct {
	// Logger logs to stderr in edged's format.
	Logger *slog.Logger
	// DefaultConfig is the config file used when none is given.
	DefaultConfig string
	// LoadConfig loads and checks a config file as edged validate does;
	// on failure it has told stderr why and returns the exit code.
	LoadConfig func(path string) (*configs.Config, int)
}

// Exit codes of edged's commands.
const (
	ExitOK      = 0
	ExitFailure = 1 // runtime failure
	ExitUsage   = 2 // bad flags or arguments
	ExitConfig  = 3 // the config is invalid
)

// NewFlags makes a command's flag set, reporting to stderr.
func NewFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("edged "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

var (
	cmdMu    sync.Mutex
	commands []Command
)

// RegisterCommand adds a subcommand, at start-up.
func RegisterCommand(c Command) {
	cmdMu.Lock()
	defer cmdMu.Unlock()
	commands = append(commands, c)
}

// Commands lists the registered subcommands in registration order.
func Commands() []Command {
	cmdMu.Lock()
	defer cmdMu.Unlock()
	return append([]Command(nil), commands...)
}
