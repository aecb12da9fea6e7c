package app

import (
	"log/slog"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/northbound"
)

// brokerOptions turns [broker] into the embedded broker's options.
func brokerOptions(cfg *configs.Config, log *slog.Logger) northbound.BrokerOptions {
	b := &cfg.Broker
	o := northbound.BrokerOptions{
		Access:           brokerAccess(cfg),
		MaxClients:       b.MaxClients,
		MaxPacketSize:    int(b.MaxPacketSize),
		MaxInflight:      b.MaxInflight,
		MaxQueued:        b.MaxQueued,
		ClientQueueBytes: int64(b.ClientQueueBytes),
		QueueBytes:       int64(b.QueueBytes),
		Logger:           log,
	}
	if b.SessionExpiry != nil {
		o.SessionExpiry = b.SessionExpiry.D()
		if o.SessionExpiry == 0 {
			o.SessionExpiry = -1 // "0s": sessions end with their connection
		}
	}
	if b.Disabled {
		return o
	}
	o.Listen = b.Listen
	if t := b.TLS; t.Listen != "" {
		o.TLS = &northbound.TLSListener{Listen: t.Listen, CertFile: t.CertFile, KeyFile: t.KeyFile,
			ClientCAFile: t.ClientCAFile, RequireClientCert: t.RequireClientCert}
	}
	if w := b.WebSocket; w.Listen != "" {
		o.WebSocket = &northbound.WebSocketListener{Listen: w.Listen, Path: w.Path, CertFile: w.CertFile,
			KeyFile: w.KeyFile, Origins: w.Origins}
	}
	return o
}

// brokerAccess is who may use the local broker, from [broker].
func brokerAccess(cfg *configs.Config) *northbound.Access {
	b := &cfg.Broker
	a := &northbound.Access{
		AnonymousRead:  b.Anonymous != "none",
		AllowAnonymous: b.AllowAnonymous,
		Namespace:      cfg.Gateway.TopicPrefix + "/" + cfg.Gateway.ID,
		Commands:       b.Commands,
	}
	if topics, err := control.NewCommandTopics(cfg.Gateway.CommandTopicTemplate, cfg.Gateway.TopicPrefix, cfg.Gateway.ID); err == nil {
		a.IsCommand = func(topic string) bool { _, _, ok := topics.Parse(topic); return ok }
	}
	for _, u := range b.Users {
		a.Users = append(a.Users, northbound.User{Name: u.Name, PasswordHash: u.PasswordHash, Publish: u.Publish, Subscribe: u.Subscribe})
	}
	return a
}
