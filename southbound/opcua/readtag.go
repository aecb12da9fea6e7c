package opcua

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

var _ southbound.TagReader = (*Device)(nil)

// ReadTag reads one tag's node now through the Read service, over the live
// session (the write door reads a written value back with it: a
// subscription reports nothing when the value did not change). It fails
// with ErrOffline while there is no session.
func (d *Device) ReadTag(ctx context.Context, tag string) (mapping.Sample, error) {
	i, ok := d.byName[tag]
	if !ok {
		return mapping.Sample{}, fmt.Errorf("opcua device %q: no tag %q", d.Name, tag)
	}
	cn, node, err := d.target(ctx, &d.tags[i], "read")
	if err != nil {
		return mapping.Sample{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	res, err := cn.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: node, AttributeID: ua.AttributeIDValue}},
		TimestampsToReturn: ua.TimestampsToReturnBoth})
	if err == nil && len(res.Results) != 1 {
		err = fmt.Errorf("the server answered %d results for 1 node", len(res.Results))
	}
	if err != nil {
		return mapping.Sample{}, fmt.Errorf("opcua device %q: read %s: %w", d.Name, tag, err)
	}
	s := mapping.Sample{Tag: d.specs[i]}
	fill(&s, res.Results[0], time.Now().UnixMilli())
	return s, nil
}

// target is the live session and the node of tag t, for a one-off read or
// write (op names it in errors); a browse_path is resolved on the session.
func (d *Device) target(ctx context.Context, t *Tag, op string) (*conn, *ua.NodeID, error) {
	d.cliMu.Lock()
	cn := d.cli
	d.cliMu.Unlock()
	if cn == nil {
		return nil, nil, fmt.Errorf("opcua device %q: %s %s: %w", d.Name, op, t.Name, ErrOffline)
	}
	node, err := cn.nodeFor(t) // nsu= ids: this session's namespace index
	if err != nil {
		return nil, nil, fmt.Errorf("opcua device %q: %s %s: %w", d.Name, op, t.Name, err)
	}
	if node != nil {
		return cn, node, nil
	}
	ids, errs, err := cn.resolvePaths(ctx, [][]*ua.QualifiedName{t.path})
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		err = statusErr(sc)
	}
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return nil, nil, fmt.Errorf("opcua device %q: %s %s: %w", d.Name, op, t.Name, err)
	}
	return cn, ids[0], nil
}
