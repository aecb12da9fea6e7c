package main

import (
	"io"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/app"
	"github.com/edged-gw/edged/southbound"
)

// protocolCommands are the subcommands the drivers' packages register
// (plan, probe, browse), run with what cmd/edged gives every command.
func protocolCommands() []command {
	var out []command
	for _, c := range southbound.Commands() {
		out = append(out, command{c.Name, c.Summary, func(args []string, stdout, stderr io.Writer) int {
			stderr = &lockedWriter{w: stderr} // device goroutines log to it too
			logs := newLogging(stderr)
			env := southbound.CommandEnv{Logger: logs.logger, DefaultConfig: defaultConfig,
				LoadConfig: func(path string) (*configs.Config, int) {
					cfg, err := app.LoadConfig(path, logs.logger)
					if err != nil {
						printConfigError(stderr, path, err)
						return nil, exitConfig
					}
					if err := app.Check(cfg); err != nil {
						printConfigError(stderr, path, err)
						return nil, exitConfig
					}
					return cfg, exitOK
				}}
			return c.Run(env, args, stdout, stderr)
		}})
	}
	return out
}
