package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/northbound"
)

// uplinkSubscriptionBase numbers the uplinks' in-process subscriptions.
const uplinkSubscriptionBase = 1000

// startUplinks opens each upstream's buffer, attaches it to the local
// broker and starts connecting. Call it after the broker started and
// before the gateway publishes, so nothing published is missed. On error,
// the uplinks already started are stopped.
func startUplinks(cfg *configs.Config, broker *northbound.Broker, log *slog.Logger) ([]*northbound.Uplink, error) {
	var ups []*northbound.Uplink
	fail := func(err error) ([]*northbound.Uplink, error) {
		_ = stopUplinks(ups)
		return nil, err
	}
	for i, uc := range cfg.Upstreams {
		u, err := newUplink(cfg, uc, log)
		if err != nil {
			return fail(fmt.Errorf("upstream %q: %w", uc.Name, err))
		}
		if err := u.Attach(broker.Subscribe, uplinkSubscriptionBase+i); err != nil {
			ups = append(ups, u)
			return fail(fmt.Errorf("upstream %q: subscribe to the local broker: %w", uc.Name, err))
		}
		u.Start()
		ups = append(ups, u)
	}
	return ups, nil
}

func newUplink(cfg *configs.Config, uc *configs.Upstream, log *slog.Logger) (*northbound.Uplink, error) {
	log = log.With("upstream", uc.Name)
	pu, err := url.Parse(uc.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	pc := northbound.PublisherConfig{
		Name: uc.Name, URL: pu, ClientID: uc.ClientID, Username: uc.Username, Password: []byte(uc.Password),
		KeepAlive: uc.KeepAlive.D(), Window: uc.MaxInflight,
	}
	localPrefix := cfg.Gateway.TopicPrefix + "/"
	remotePrefix := ""
	statusPrefix := cfg.Gateway.TopicPrefix
	if uc.TopicPrefix != "" {
		remotePrefix, statusPrefix = uc.TopicPrefix+"/", uc.TopicPrefix
	}
	localStatus := cfg.Gateway.TopicPrefix + "/" + cfg.Gateway.ID + "/status"
	pc.WillTopic, pc.WillPayload = statusPrefix+"/"+cfg.Gateway.ID+"/status", []byte("offline")
	if pu.Scheme == "mqtts" {
		pc.TLS, err = northbound.NewTLSConfig(northbound.TLSOptions{
			CAFile: uc.CAFile, CertFile: uc.CertFile, KeyFile: uc.KeyFile, ServerName: uc.ServerName,
			ALPN: uc.ALPN, InsecureSkipVerify: uc.InsecureSkipVerify,
		}, pu.Hostname())
		if err != nil {
			return nil, err
		}
		if uc.InsecureSkipVerify {
			log.Warn("insecure_skip_verify = true: the cloud broker's certificate is NOT checked; anyone on the path can read and alter the data")
		}
	} else {
		log.Warn("insecure_plaintext = true: data and password cross the network unencrypted", "url", uc.URL)
	}
	var pub northbound.Publisher
	switch uc.Protocol {
	case "5":
		pub = northbound.NewMQTT5(pc)
	default:
		return nil, fmt.Errorf("protocol %q is not available", uc.Protocol)
	}
	sync := buffer.SyncInterval
	if uc.Sync == "always" {
		sync = buffer.SyncAlways
	}
	q, err := buffer.Open(buffer.Options{
		Dir: uc.BufferDir, MaxBytes: int64(uc.MaxBytes), MaxAge: uc.MaxAge.D(),
		Sync: sync, SyncInterval: uc.SyncInterval.D(), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return northbound.NewUplink(northbound.UplinkOptions{
		Name: uc.Name, Publisher: pub, Queue: q, Filters: uc.Topics,
		LocalPrefix: localPrefix, RemotePrefix: remotePrefix,
		StatusTopic: pc.WillTopic, Skip: []string{localStatus},
		ReplayRate: float64(uc.ReplayRate), Logger: log,
	}), nil
}

// stopUplinks stops every uplink (announcing offline, closing buffers).
func stopUplinks(ups []*northbound.Uplink) error {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout/2)
	defer cancel()
	var errs []error
	for _, u := range ups {
		errs = append(errs, u.Stop(ctx))
	}
	return errors.Join(errs...)
}
