// Package app wires edged together: the driver registry and a runtime made
// of the embedded broker and the gateway, shared by the CLI and the bench
// programs so that what is measured is what ships.
package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/modbus"
)

var (
	registerOnce sync.Once
	driverLogger atomic.Pointer[slog.Logger]
)

// registerDrivers registers every driver edged ships. Adding a protocol
// means one line here and one folder under southbound/.
func registerDrivers() {
	registerOnce.Do(func() {
		// One line per driver.
		southbound.Register("modbus-tcp", func() southbound.Driver { d := modbus.NewTCP(); d.Logger = driverLogger.Load(); return d })
	})
}

type registry struct{}

func (registry) New(name string) (configs.Settings, bool) {
	d, ok := southbound.New(name)
	return d, ok
}

func (registry) Names() []string { return southbound.Names() }

// Drivers returns the registry the config loader makes drivers from; the
// drivers it makes log to log.
func Drivers(log *slog.Logger) configs.Drivers {
	registerDrivers()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	driverLogger.Store(log)
	return registry{}
}

// Runtime is a started broker and gateway.
type Runtime struct {
	Broker  *northbound.Broker
	Gateway *gateway.Gateway
	log     *slog.Logger
}

// Start starts the embedded broker and then the gateway for cfg.
func Start(ctx context.Context, cfg *configs.Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listen := cfg.Broker.Listen
	if cfg.Broker.Disabled {
		listen = ""
	}
	broker := northbound.NewBroker(northbound.BrokerOptions{Listen: listen, Logger: log})
	gw, err := gateway.New(cfg, broker, log)
	if err != nil {
		return nil, err
	}
	if err := broker.Start(); err != nil {
		return nil, err
	}
	if err := gw.Start(ctx); err != nil {
		_ = broker.Stop()
		return nil, err
	}
	return &Runtime{Broker: broker, Gateway: gw, log: log}, nil
}

// StopTimeout bounds a graceful stop.
const StopTimeout = 10 * time.Second

// Stop stops the devices first (so their last samples and the offline
// status are published), then the broker.
func (r *Runtime) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	err := r.Gateway.Stop(ctx)
	return errors.Join(err, r.Broker.Stop())
}
